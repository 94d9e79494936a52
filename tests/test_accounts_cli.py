"""`longtail users` and `longtail tokens`, run as a user would (subprocesses), alone and
while a platform runs on the same data directory."""
from __future__ import annotations

import re
import subprocess
import sys
import urllib.parse

import grpc
import pytest

from longtail.accounts.v1 import account_service_pb2 as pb
from longtail.accounts.v1 import account_service_pb2_grpc as pb_grpc
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from longtail_common.grpc_server import dial
from tests.auth_helpers import service_metadata

TOKEN_RE = re.compile(r"lt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


def longtail(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "longtail_cli.cli", *args], capture_output=True, text=True,
                            timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _link_token(stdout: str) -> tuple[str, str]:
    """(the link's base and path, its token) from `users add` / `users password-link` output."""
    url = urllib.parse.urlsplit(stdout.strip().splitlines()[-1])
    return f"{url.scheme}://{url.netloc}{url.path}", urllib.parse.parse_qs(url.query)["token"][0]


def test_users_and_tokens_on_a_data_dir(tmp_path):
    where = ["--data-dir", str(tmp_path)]
    added = longtail("users", "add", "ada", "--email", "ada@example.org", "--admin", *where)
    assert "created admin account ada" in added.stdout
    assert _link_token(added.stdout)[0] == "http://127.0.0.1:8080/account/set-password"
    longtail("users", "add", "bob", "--email", "bob@example.org", *where)
    listed = longtail("users", "list", *where).stdout.splitlines()
    assert listed[0].split() == ["USERNAME", "EMAIL", "ADMIN", "DISABLED", "PASSWORD", "CREATED"]
    assert [line.split()[:6] for line in listed[1:]] == [["ada", "ada@example.org", "yes", "no", "not", "set"],
                                                          ["bob", "bob@example.org", "no", "no", "not", "set"]]
    created = longtail("tokens", "create", "ada", "--expires-days", "30", "--label", "ci", *where)
    token = created.stdout.strip().splitlines()[-1]
    assert TOKEN_RE.fullmatch(token)
    token_id = token.split("_")[1]
    assert token_id in longtail("tokens", "list", "ada", *where).stdout
    assert token.split("_", 2)[2] not in longtail("tokens", "list", "ada", *where).stdout
    longtail("tokens", "revoke", "ada", token_id, *where)
    assert token_id not in longtail("tokens", "list", "ada", *where).stdout


@pytest.mark.parametrize("args, code, message", [
    (["users", "add", "Ada", "--email", "a@example.org"], 2, "invalid username 'Ada'"),
    (["users", "add", "ada\n", "--email", "a@example.org"], 2, "invalid username"),
    (["users", "add", "me", "--email", "a@example.org"], 2, "invalid username"),
    (["users", "add", "carol", "--email", "not an email"], 2, "invalid email"),
    (["users", "add", "ada", "--email", "a@example.org"], 1, "already exists"),
    (["users", "disable", "nobody"], 1, "no account named 'nobody'"),
    (["tokens", "create", "nobody"], 1, "no account named 'nobody'"),
    (["tokens", "create", "ada", "--expires-days", "0"], 2, "--expires-days must be a positive"),
    (["tokens", "create", "ada", "--expires-days", "-3"], 2, "--expires-days must be a positive"),
    (["tokens", "revoke", "ada", "0123456789abcdef"], 1, "has no token"),
])
def test_bad_input_is_one_line_and_an_exit_code(tmp_path, args, code, message):
    longtail("users", "add", "ada", "--email", "ada@example.org", "--data-dir", str(tmp_path))
    result = longtail(*args, "--data-dir", str(tmp_path), check=False)
    assert result.returncode == code and message in result.stderr and "Traceback" not in result.stderr, result


def test_a_disabled_account_gets_no_token_and_a_missing_data_dir_is_named(tmp_path):
    where = ["--data-dir", str(tmp_path)]
    longtail("users", "add", "bob", "--email", "bob@example.org", *where)
    assert "disabled" in longtail("users", "disable", "bob", *where).stdout
    refused = longtail("tokens", "create", "bob", *where, check=False)
    assert refused.returncode == 1 and "account bob is disabled" in refused.stderr
    longtail("users", "enable", "bob", *where)
    assert TOKEN_RE.fullmatch(longtail("tokens", "create", "bob", *where).stdout.strip().splitlines()[-1])
    missing = longtail("users", "list", "--data-dir", str(tmp_path / "typo"), check=False)
    assert missing.returncode == 1 and "no Longtail data" in missing.stderr


@pytest.mark.slow
def test_commands_work_while_the_platform_runs(tmp_path):
    """Written by the CLI, seen at once by the running metadata_svc: a password link, a
    token, then a disable. The platform and the CLI read the same --config file."""
    config = tmp_path / "longtail.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[platform]\npublic_url = "https://video.example.org/"\n')
    cfg = Config(data_dir=str(tmp_path / "data"))
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=1) as platform:
        added = longtail("users", "add", "ada", "--email", "ada@example.org", "--config", str(config))
        base, link_token = _link_token(added.stdout)
        assert base == "https://video.example.org/account/set-password"
        token = longtail("tokens", "create", "ada", "--config", str(config)).stdout.strip().splitlines()[-1]
        with dial(platform.addresses["metadata"], platform.cfg, "metadata") as channel:
            stub = pb_grpc.AccountServiceStub(channel)
            stub.SetPassword(pb.SetPasswordRequest(link_token=link_token, password="a long passphrase"))
            # Checking passwords and tokens is for services (the gateway): the test signs as one.
            as_service = service_metadata(cfg)
            assert stub.VerifyPassword(pb.VerifyPasswordRequest(username="ada", password="a long passphrase"),
                                       metadata=as_service).username == "ada"
            assert stub.ResolveToken(pb.ResolveTokenRequest(token=token), metadata=as_service).username == "ada"
            longtail("users", "disable", "ada", "--config", str(config))
            with pytest.raises(grpc.RpcError) as err:
                stub.ResolveToken(pb.ResolveTokenRequest(token=token), metadata=as_service)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        listed = longtail("users", "list", "--config", str(config)).stdout
        assert re.search(r"^ada\s+ada@example.org\s+no\s+yes\s+set\b", listed, re.M), listed
