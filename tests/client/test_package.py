"""The public names of `tokenlife` and `tokenlife.client`, and what happens where the
server extra is not installed: a one-line message naming it, never a traceback. (A real
client-only install is tests/client/test_client_install.py; here the server's modules are
hidden from a fresh interpreter, as `sys.modules[name] = None` makes an import fail.)"""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import tokenlife
import tokenlife.client


@pytest.mark.parametrize("package", [tokenlife, tokenlife.client])
def test_every_public_name_resolves_and_all_lists_them(package: object) -> None:
    names = package.__all__  # type: ignore[attr-defined]
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(package, name) is not None, name
    with pytest.raises(AttributeError, match="no_such_name"):
        package.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def test_the_package_exports_what_it_exported_before_and_the_models() -> None:
    before = {
        "ConfigurationError", "InvalidStateError", "ReauthorizationRequiredError",
        "ReceivedEvent", "Tokenlife", "TokenlifeError", "UnknownConnectionError",
        "UnknownIntegrationError", "UsageError", "authorize_url", "events", "get_access_token",
    }  # fmt: skip
    assert before <= set(tokenlife.__all__)
    assert set(tokenlife.__all__) <= set(dir(tokenlife))
    from tokenlife.library import Tokenlife
    from tokenlife.models import Connection

    assert tokenlife.Tokenlife is Tokenlife and tokenlife.Connection is Connection
    assert tokenlife.events.__name__ == "tokenlife.events"


def without(hidden: tuple[str, ...], code: str) -> subprocess.CompletedProcess[str]:
    """`code` run in a fresh interpreter where `hidden` can't be imported."""
    hide = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in hidden)
    return subprocess.run([sys.executable, "-c", hide + code], capture_output=True, text=True)


SERVER = ("click", "celery", "redis", "aiohttp", "pydantic", "structlog", "cryptography")


def test_the_command_without_the_server_extra_says_so_in_one_line() -> None:
    ran = without(SERVER, "from tokenlife._command import main; main()")  # the console script
    assert ran.returncode == 1
    assert ran.stderr.splitlines() == [
        "tokenlife: the command needs the server extra, which is not installed (no module "
        "named 'click'): pip install 'tokenlife[server]'"
    ]


def test_importing_the_command_without_the_server_extra_raises_rather_than_exits() -> None:
    # pkgutil.walk_packages and Sphinx autodoc import every module; none may end the process.
    ran = without(SERVER, (
        "import pkgutil, tokenlife\n"
        "failed = []\n"
        "list(pkgutil.walk_packages(tokenlife.__path__, 'tokenlife.', onerror=failed.append))\n"
        "try:\n    import tokenlife.cli\nexcept ImportError as exc:\n"
        "    print(type(exc).__name__, exc.name, exc)\n"
        "print('tokenlife.cli' in failed)\n"
    ))  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "ServerExtraMissingError click tokenlife: the command needs the server extra, which is "
        "not installed (no module named 'click'): pip install 'tokenlife[server]'",
        "True",  # walked past, as a package that can't be imported here
    ]


def test_the_client_works_without_the_server_extra_and_the_library_names_it() -> None:
    ran = without(SERVER, (
        "import tokenlife, tokenlife.client\n"
        "print(tokenlife.client.Client('http://127.0.0.1:9', 'k'))\n"
        "try:\n    tokenlife.Tokenlife\nexcept ModuleNotFoundError as exc:\n    print(exc)\n"
    ))  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    client, missing = ran.stdout.splitlines()
    assert client == "Client('http://127.0.0.1:9')"
    assert missing.startswith("tokenlife.Tokenlife needs the server extra")
    assert missing.endswith("pip install 'tokenlife[server]'")


def test_a_missing_module_of_tokenlife_itself_is_not_blamed_on_the_extra() -> None:
    ran = without(("tokenlife.cli.keys",), "from tokenlife._command import main; main()")
    assert ran.returncode == 1 and "Traceback" in ran.stderr
    assert "tokenlife[server]" not in ran.stderr


def test_the_clients_take_the_arguments_of_the_in_process_tokenlife() -> None:
    """Code moves between `tokenlife.Tokenlife` and `AsyncClient`, `tokenlife.sync.Tokenlife`
    and `Client`: each method they share takes the same arguments."""
    from tokenlife.client import AsyncClient, Client
    from tokenlife.library import Tokenlife
    from tokenlife.sync import Tokenlife as SyncTokenlife

    def methods(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    for client, in_process in ((AsyncClient, Tokenlife), (Client, SyncTokenlife)):
        ours, theirs = methods(client), methods(in_process)
        shared = set(ours) & set(theirs)
        assert {"integrations", "connections", "connection", "access_token", "refresh",
                "delete", "create_connect_session"} <= shared  # fmt: skip
        for name in shared:
            assert ours[name].parameters == theirs[name].parameters, (client, name)
            # refresh() differs on purpose: queued here (None), done in process.
            if name != "refresh":
                assert ours[name].return_annotation == theirs[name].return_annotation, name
