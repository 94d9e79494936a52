"""AccountService and channel ownership over gRPC, on the embedded (SQLite) store."""
from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from longtail.accounts.v1 import account_pb2 as apb
from longtail.accounts.v1 import account_service_pb2 as pb
from longtail.accounts.v1 import account_service_pb2_grpc as pb_grpc
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail_common.adapters.sqlite_accounts import SqliteAccountStore
from longtail_common.adapters.sqlite_metadata import SqliteMetadataStore
from longtail_common.config import AuthConfig
from metadata_svc.accounts import Accounts
from metadata_svc.server import MetadataAndAccountServicer, _add_servicers

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def svc(tmp_path):
    """(AccountService stub, MetadataService stub, clock, Accounts)."""
    path = tmp_path / "metadata.sqlite3"
    clock = Clock()
    accounts = Accounts(SqliteAccountStore(path), AuthConfig(token_max_expiry_days=0), clock=clock)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    _add_servicers(MetadataAndAccountServicer(SqliteMetadataStore(path), accounts), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.AccountServiceStub(channel), mpb_grpc.MetadataServiceStub(channel), clock, accounts
    channel.close()
    server.stop(None)


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


def _account_with_password(stub, username: str, admin: bool = False) -> apb.Account:
    account = stub.CreateAccount(pb.CreateAccountRequest(account=apb.Account(username=username, admin=admin)))
    link = stub.CreatePasswordLink(pb.CreatePasswordLinkRequest(account_id=account.id))
    return stub.SetPassword(pb.SetPasswordRequest(link_token=link.token, password=PASSWORD))


def test_create_get_list_and_bad_usernames(svc):
    stub, *_ = svc
    ada = stub.CreateAccount(pb.CreateAccountRequest(account=apb.Account(username="ada", email="ada@example.org",
                                                                         admin=True)))
    assert ada.id and ada.admin and not ada.password_set and ada.etag
    assert stub.GetAccount(pb.GetAccountRequest(username="ada")) == ada
    assert stub.GetAccount(pb.GetAccountRequest(id=ada.id)) == ada
    for bad in ("Ada", "a", "ada\n", "1ada", "me", "ad a", "x" * 33, "ad/a"):
        assert _code(lambda: stub.CreateAccount(pb.CreateAccountRequest(account=apb.Account(username=bad)))) \
            == grpc.StatusCode.INVALID_ARGUMENT, bad
    assert _code(lambda: stub.CreateAccount(pb.CreateAccountRequest(
        account=apb.Account(username="bob", email="not-an-email")))) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: stub.CreateAccount(pb.CreateAccountRequest(account=apb.Account(username="ada")))) \
        == grpc.StatusCode.ALREADY_EXISTS
    assert _code(lambda: stub.GetAccount(pb.GetAccountRequest(username="nobody"))) == grpc.StatusCode.NOT_FOUND
    for name in ("bob", "cy", "dee"):
        stub.CreateAccount(pb.CreateAccountRequest(account=apb.Account(username=name)))
    names, token = [], ""
    while True:
        page = stub.ListAccounts(pb.ListAccountsRequest(page_size=3, page_token=token))
        names += [a.username for a in page.accounts]
        token = page.next_page_token
        if not token:
            break
    assert names == ["ada", "bob", "cy", "dee"]


def test_update_account_by_mask_and_etag(svc):
    stub, *_ = svc
    bob = stub.CreateAccount(pb.CreateAccountRequest(account=apb.Account(username="bob")))
    updated = stub.UpdateAccount(pb.UpdateAccountRequest(
        account=apb.Account(id=bob.id, disabled=True, admin=True, etag=bob.etag),
        update_mask=field_mask_pb2.FieldMask(paths=["disabled"])))
    assert updated.disabled and not updated.admin and updated.etag != bob.etag
    stale = pb.UpdateAccountRequest(account=apb.Account(id=bob.id, admin=True, etag=bob.etag),
                                    update_mask=field_mask_pb2.FieldMask(paths=["admin"]))
    assert _code(lambda: stub.UpdateAccount(stale)) == grpc.StatusCode.ABORTED
    for paths in ([], ["username"], ["password_set"]):
        bad = pb.UpdateAccountRequest(account=apb.Account(id=bob.id), update_mask=field_mask_pb2.FieldMask(paths=paths))
        assert _code(lambda: stub.UpdateAccount(bad)) == grpc.StatusCode.INVALID_ARGUMENT


def test_password_link_sets_the_password_once(svc):
    stub, _, clock, _ = svc
    ada = stub.CreateAccount(pb.CreateAccountRequest(account=apb.Account(username="ada")))
    link = stub.CreatePasswordLink(pb.CreatePasswordLinkRequest(account_id=ada.id))
    assert _code(lambda: stub.SetPassword(pb.SetPasswordRequest(link_token=link.token, password="short"))) \
        == grpc.StatusCode.INVALID_ARGUMENT  # refused: the link is kept
    for weak in ("password123", "qwertyuiop", "aaaaaaaaaaaa"):  # long enough, but among the first guesses
        with pytest.raises(grpc.RpcError) as err:
            stub.SetPassword(pb.SetPasswordRequest(link_token=link.token, password=weak))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "too weak" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:  # the username is among the guesses too (3 without it)
        stub.CreateAccount(pb.CreateAccountRequest(account=apb.Account(username="zephyrquill"), password="zephyrquill7"))
    assert "too weak" in err.value.details()
    assert stub.SetPassword(pb.SetPasswordRequest(link_token=link.token, password=PASSWORD)).password_set
    assert _code(lambda: stub.SetPassword(pb.SetPasswordRequest(link_token=link.token, password=PASSWORD))) \
        == grpc.StatusCode.NOT_FOUND
    expiring = stub.CreatePasswordLink(pb.CreatePasswordLinkRequest(account_id=ada.id))
    clock.now += 8 * 86400  # past auth.password_link_ttl_s
    assert _code(lambda: stub.SetPassword(pb.SetPasswordRequest(link_token=expiring.token, password=PASSWORD))) \
        == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: stub.CreatePasswordLink(pb.CreatePasswordLinkRequest(account_id="0" * 32))) \
        == grpc.StatusCode.NOT_FOUND


def test_verify_password_says_nothing_about_why(svc, monkeypatch):
    stub, _, _, accounts = svc
    ada = _account_with_password(stub, "ada", admin=True)
    principal = stub.VerifyPassword(pb.VerifyPasswordRequest(username="ada", password=PASSWORD))
    assert (principal.account_id, principal.username, principal.admin, principal.token_id) == (ada.id, "ada", True, "")
    stub.CreateAccount(pb.CreateAccountRequest(account=apb.Account(username="nopass")))
    verified = []

    class CountingHasher:
        def __init__(self, real):
            self.real = real

        def verify(self, stored, password):
            verified.append(stored)
            return self.real.verify(stored, password)

        def __getattr__(self, name):
            return getattr(self.real, name)

    monkeypatch.setattr(accounts, "_hasher", CountingHasher(accounts._hasher))
    messages = set()
    for username, password in (("ada", "wrong password"), ("nobody", PASSWORD), ("nopass", PASSWORD),
                               ("Bad\nName", PASSWORD), ("ada", "")):
        with pytest.raises(grpc.RpcError) as err:
            stub.VerifyPassword(pb.VerifyPasswordRequest(username=username, password=password))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        messages.add(err.value.details())
    assert len(messages) == 1
    assert len(verified) == 5  # unknown accounts cost an Argon2 verification too
    stub.UpdateAccount(pb.UpdateAccountRequest(account=apb.Account(id=ada.id, disabled=True),
                                               update_mask=field_mask_pb2.FieldMask(paths=["disabled"])))
    assert _code(lambda: stub.VerifyPassword(pb.VerifyPasswordRequest(username="ada", password=PASSWORD))) \
        == grpc.StatusCode.UNAUTHENTICATED


def test_tokens_resolve_until_revoked_expired_or_disabled(svc):
    stub, _, clock, _ = svc
    ada = stub.CreateAccount(pb.CreateAccountRequest(account=apb.Account(username="ada")))
    created = stub.CreateToken(pb.CreateTokenRequest(account_id=ada.id, display_name="ci"))
    assert created.secret.startswith(f"lt_{created.token.id}_") and not created.token.HasField("expire_time")
    principal = stub.ResolveToken(pb.ResolveTokenRequest(token=created.secret))
    assert (principal.account_id, principal.username, principal.token_id) == (ada.id, "ada", created.token.id)
    clock.now += 1
    expiry = Timestamp(seconds=int(clock.now) + 3600)
    short = stub.CreateToken(pb.CreateTokenRequest(account_id=ada.id, display_name="short", expire_time=expiry))
    listed = stub.ListTokens(pb.ListTokensRequest(account_id=ada.id)).tokens
    assert [t.id for t in listed] == [short.token.id, created.token.id]  # newest first
    assert listed[0] == short.token and listed[0].expire_time == expiry and listed[1].display_name == "ci"
    assert created.secret.split("_", 2)[2] not in str(listed)
    bad = [created.secret + "x", created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B"), "", "lt_",
           "Bearer " + created.secret, created.secret.replace("lt_", "xx_")]
    for token in bad:
        assert _code(lambda: stub.ResolveToken(pb.ResolveTokenRequest(token=token))) == grpc.StatusCode.UNAUTHENTICATED
    clock.now += 3601
    assert _code(lambda: stub.ResolveToken(pb.ResolveTokenRequest(token=short.secret))) \
        == grpc.StatusCode.UNAUTHENTICATED
    bob = stub.CreateAccount(pb.CreateAccountRequest(account=apb.Account(username="bob")))
    assert _code(lambda: stub.RevokeToken(pb.RevokeTokenRequest(account_id=bob.id, token_id=created.token.id))) \
        == grpc.StatusCode.NOT_FOUND  # not bob's
    stub.RevokeToken(pb.RevokeTokenRequest(account_id=ada.id, token_id=created.token.id))
    assert _code(lambda: stub.ResolveToken(pb.ResolveTokenRequest(token=created.secret))) \
        == grpc.StatusCode.UNAUTHENTICATED
    third = stub.CreateToken(pb.CreateTokenRequest(account_id=ada.id))
    stub.UpdateAccount(pb.UpdateAccountRequest(account=apb.Account(id=ada.id, disabled=True),
                                               update_mask=field_mask_pb2.FieldMask(paths=["disabled"])))
    assert _code(lambda: stub.ResolveToken(pb.ResolveTokenRequest(token=third.secret))) \
        == grpc.StatusCode.UNAUTHENTICATED
    assert _code(lambda: stub.CreateToken(pb.CreateTokenRequest(account_id=ada.id))) \
        == grpc.StatusCode.FAILED_PRECONDITION
    past = Timestamp(seconds=int(clock.now) - 1)
    assert _code(lambda: stub.CreateToken(pb.CreateTokenRequest(account_id=bob.id, expire_time=past))) \
        == grpc.StatusCode.INVALID_ARGUMENT


def test_token_max_expiry_caps_and_refuses(svc):
    _, _, clock, accounts = svc
    accounts.auth.token_max_expiry_days = 30
    ada = accounts.create("ada")
    record, _ = accounts.create_token(ada.account_id)
    assert record.expire_time_us == int(clock.now * 1e6) + 30 * 86_400_000_000
    with pytest.raises(ValueError):
        accounts.create_token(ada.account_id, expire_time_us=int((clock.now + 31 * 86400) * 1e6))


def test_channels_belong_to_their_first_uploader(svc):
    stub, meta, *_ = svc
    ada = stub.CreateAccount(pb.CreateAccountRequest(account=apb.Account(username="ada")))
    bob = stub.CreateAccount(pb.CreateAccountRequest(account=apb.Account(username="bob")))

    def create_video(video_id: str, owner: str) -> video_pb2.Video:
        return meta.CreateVideo(mpb.CreateVideoRequest(video=video_pb2.Video(
            id=video_id, title="t", channel=video_pb2.Channel(id="cooking", owner_account_id=owner))))

    assert create_video("v1", ada.id).channel == video_pb2.Channel(id="cooking", name="cooking",
                                                                   owner_account_id=ada.id)
    assert create_video("v2", bob.id).channel.owner_account_id == ada.id  # the stored owner: the caller checks
    created = meta.CreateChannel(mpb.CreateChannelRequest(channel=video_pb2.Channel(
        id="baking", name="Baking", owner_account_id=bob.id)))
    assert created == video_pb2.Channel(id="baking", name="Baking", owner_account_id=bob.id)
    assert meta.GetChannel(mpb.GetChannelRequest(id="baking")) == created
    for channel in (video_pb2.Channel(id="baking", owner_account_id=ada.id),):
        assert _code(lambda: meta.CreateChannel(mpb.CreateChannelRequest(channel=channel))) \
            == grpc.StatusCode.ALREADY_EXISTS
    for channel in (video_pb2.Channel(id="pies"), video_pb2.Channel(id="pies\n", owner_account_id=bob.id),
                    video_pb2.Channel(id="pies", owner_account_id="../x")):
        assert _code(lambda: meta.CreateChannel(mpb.CreateChannelRequest(channel=channel))) \
            == grpc.StatusCode.INVALID_ARGUMENT
    assert [c.id for c in meta.ListChannels(mpb.ListChannelsRequest(owner_account_id=bob.id)).channels] == ["baking"]
    assert [c.id for c in meta.ListChannels(mpb.ListChannelsRequest(owner_account_id=ada.id)).channels] == ["cooking"]
    assert _code(lambda: meta.ListChannels(mpb.ListChannelsRequest())) == grpc.StatusCode.INVALID_ARGUMENT
