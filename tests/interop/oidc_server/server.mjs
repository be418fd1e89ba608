// panva's oidc-provider (an OpenID Certified server) for tests/interop: the behaviour our
// fakes only imitate (prompt values it refuses, offline_access dropped without consent,
// refresh-token reuse detection) comes from the real implementation here.
//
//   node server.mjs PORT [CLIENT_ID CLIENT_SECRET REDIRECT_URI]   (or OIDC_* variables)
//
// Prints "ready" once it listens on 127.0.0.1:PORT. Everything lives in memory.
// Pinned to 8.8.1: 9.x declares no engines but warns "Unsupported runtime" below Node 22;
// 8.x supports every LTS from 18 on (Node 20 here, Debian's nodejs 18 where installed).
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.mjs PORT [CLIENT_ID CLIENT_SECRET REDIRECT_URI]');
  process.exit(2);
}
const clientId = process.argv[3] ?? process.env.OIDC_CLIENT_ID ?? 'tokenlife';
const clientSecret = process.argv[4] ?? process.env.OIDC_CLIENT_SECRET ?? 'tokenlife-secret';
const redirectUri = process.argv[5] ?? process.env.OIDC_REDIRECT_URI
  ?? 'http://127.0.0.1:9/oauth/callback';
// The same client again, whose refresh tokens rotate on every use (see rotateRefreshToken).
const rotatingId = `${clientId}-rotating`;

const client = (client_id) => ({
  client_id,
  client_secret: clientSecret,
  redirect_uris: [redirectUri],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  // tokenlife's `custom` preset authenticates with HTTP Basic (RFC 6749 §2.3.1 MUST).
  token_endpoint_auth_method: 'client_secret_basic',
});

// oidc-provider's own default, quoted from lib/helpers/defaults.js: a confidential client's
// refresh token rotates only past 70% of its lifetime, so a fresh one is kept as it is.
function defaultRotation(ctx) {
  const { RefreshToken: token, Client: c } = ctx.oidc.entities;
  if (token.totalLifetime() >= 365.25 * 24 * 60 * 60) return false;
  if (c.clientAuthMethod === 'none' && !token.isSenderConstrained()) return true;
  return token.ttlPercentagePassed() >= 70;
}

const provider = new Provider(`http://127.0.0.1:${port}`, {
  cookies: { keys: ['interop-test-cookie-key'] }, // a test server: a fixed key is enough
  clients: [client(clientId), client(rotatingId)],
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  claims: { openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'] },
  features: {
    devInteractions: { enabled: true }, // the login and consent pages the tests fill in
    introspection: { enabled: true },
    revocation: { enabled: true },
  },
  // Short, so a refresh is due soon; expires_in is in every token response.
  ttl: { AccessToken: 60 },
  // Defaults kept on purpose: issueRefreshToken (only when offline_access was granted,
  // which needs prompt=consent, OIDC Core §11) and PKCE (8.x asks it of every client;
  // tokenlife sends S256).
  rotateRefreshToken: (ctx) => ctx.oidc.client.clientId === rotatingId || defaultRotation(ctx),
});

provider.listen(port, '127.0.0.1', () => console.log('ready'));
