"""TOKENLIFE_REDIS_URL's cluster and Sentinel forms: what they name, and one-line errors
that quote no part of the URL."""

from __future__ import annotations

import pytest

from tokenlife.core.redis_topology import RedisTarget, Topology, parse_redis_url
from tokenlife.core.service_urls import REDIS_SCHEMES, check_url, redact_url
from tokenlife.log_redaction import redact_text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:6379/0", RedisTarget(Topology.STANDALONE, "redis://h:6379/0")),
        ("redis+cluster://h1:7000,h2:7001",
         RedisTarget(Topology.CLUSTER, "redis://h1:7000/0", (("h1", 7000), ("h2", 7001)))),
        ("REDISS+CLUSTER://u:p%2Fw@h1,[::1]:7001/0?ssl_cert_reqs=none",
         RedisTarget(Topology.CLUSTER, "rediss://u:p%2Fw@h1:6379/0?ssl_cert_reqs=none",
                     (("h1", 6379), ("::1", 7001)))),
        ("redis+sentinel://:pw@s1:26379,s2/mymaster/2",
         RedisTarget(Topology.SENTINEL, "redis://:pw@s1:26379/2",
                     (("s1", 26379), ("s2", 26379)), "mymaster")),
        ("rediss+sentinel://s1/mymaster?sentinel_password=sp&ssl_ca_certs=%2Fca.pem",
         RedisTarget(Topology.SENTINEL, "rediss://s1:26379/0?ssl_ca_certs=%2Fca.pem",
                     (("s1", 26379),), "mymaster", "sp")),
    ],
)  # fmt: skip
def test_what_a_url_names(url: str, expected: RedisTarget) -> None:
    target = parse_redis_url(url)
    assert target == expected
    assert check_url(url, REDIS_SCHEMES) == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://:s3cr/et@h1:7000,h2:7001", "percent-encode"),
        ("redis+cluster://h1:7000,h2:s3cret", "comma-separated list of host:port"),
        ("redis+cluster://h1:7000,,h2:7001", "comma-separated list of host:port"),
        ("redis+cluster://h1:99999", "comma-separated list of host:port"),
        ("redis+cluster://:s3cret@h1:7000/1", "database 0 only"),
        ("redis+cluster://:s3cret@h1:7000?db=2", "database 0 only"),
        ("redis+cluster://h1:7000?sentinel_password=s3cret", r"redis\+sentinel:// URLs only"),
        ("redis+sentinel://:s3cret@s1:26379", "name the master"),
        ("redis+sentinel://:s3cret@s1:26379/mymaster/s3cret", "must be a number"),
    ],
)
def test_a_bad_url_is_one_line_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as raised:
        check_url(url, REDIS_SCHEMES)
    message = str(raised.value)
    assert "s3cr" not in message and "\n" not in message
    assert redact_text(message) == message  # survives the log redaction unchanged


@pytest.mark.parametrize(
    "url", ["redis+cluster://h1:7000,h2:7001", "rediss+sentinel://s1:26379/mymaster"]
)
def test_the_broker_is_never_a_cluster_or_our_sentinel_url(url: str) -> None:
    with pytest.raises(ValueError, match=r"plain Redis .* or to RabbitMQ"):
        check_url(url)
    with pytest.raises(ValueError, match="plain Redis"):
        check_url(f"redis://h:6379/0;{url}")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis+cluster://:s3cret@h1:7000,h2:7001", "redis+cluster://***@h1:7000,h2:7001"),
        ("redis+cluster://h1:7000,h2:7001", "redis+cluster://h1:7000,h2:7001"),
        ("redis+sentinel://s1,s2/m?sentinel_password=s3cret",
         "redis+sentinel://s1,s2/m?sentinel_password=***"),
        ("rediss+sentinel://u:s3cret@s1,s2/m/1?sentinel_password=s3cret&ssl_cert_reqs=none",
         "rediss+sentinel://u:***@s1,s2/m/1?sentinel_password=***&ssl_cert_reqs=none"),
    ],
)  # fmt: skip
def test_a_host_list_is_shown_without_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_password_is_not_in_the_repr() -> None:
    target = parse_redis_url("redis+sentinel://:s3cret@s1/m?sentinel_password=s3cret")
    assert "s3cret" not in repr(target)
