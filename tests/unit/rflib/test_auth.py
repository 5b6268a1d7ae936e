"""The HMAC answer is bound to the secret, the nonce and the claimed identity."""

from __future__ import annotations

import os

import pytest

from routeflow.rflib import auth
from routeflow.rflib.protocol import ClientHello, ControllerRegister, PortRegister

SECRET = b"0123456789abcdef0123456789abcdef"


def test_answer_checks_only_with_same_secret_nonce_and_identity():
    nonce = auth.new_nonce()
    mac = auth.answer(SECRET, nonce, "vm:0x5")
    assert auth.check(SECRET, nonce, "vm:0x5", mac)
    assert not auth.check(SECRET + b"x", nonce, "vm:0x5", mac)
    assert not auth.check(SECRET, auth.new_nonce(), "vm:0x5", mac)
    assert not auth.check(SECRET, nonce, "vm:0x6", mac)
    assert not auth.check(SECRET, nonce, "vm:0x5", "00" * 32)


def test_identity_of_hellos():
    assert auth.identity(ClientHello(vm_id=5)) == "vm:0x5"
    assert auth.identity(ControllerRegister(ct_id=2)) == "ct:2"
    with pytest.raises(auth.AuthError):
        auth.identity(PortRegister(vm_id=5, vm_port=1, hwaddress="02:00:00:00:00:01"))


def test_secret_files(tmp_path):
    path = str(tmp_path / "s")
    secret = auth.write_secret(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert auth.load_secret(path) == secret
    os.chmod(path, 0o640)
    with pytest.raises(auth.AuthError, match="chmod 600"):
        auth.load_secret(path)
    short = tmp_path / "short"
    short.write_bytes(b"abc")
    os.chmod(short, 0o600)
    with pytest.raises(auth.AuthError, match="shorter"):
        auth.load_secret(str(short))
    with pytest.raises(auth.AuthError, match="cannot read"):
        auth.load_secret(str(tmp_path / "missing"))


def test_client_handshake_answers_the_challenge_for_the_identity_of_its_hello():
    from routeflow.rflib.protocol import AuthChallenge, AuthResponse

    hello = ControllerRegister(ct_id=2)
    hs = auth.ClientHandshake(hello, SECRET)
    assert hs.start() == [hello] and not hs.done
    nonce = auth.new_nonce()
    [reply] = hs.receive(AuthChallenge(nonce=nonce))
    assert isinstance(reply, AuthResponse) and hs.done
    assert auth.check(SECRET, nonce, "ct:2", reply.mac)
    with pytest.raises(auth.AuthError):
        hs.receive(AuthChallenge(nonce=nonce))  # one challenge per session


def test_client_handshake_refuses_anything_but_a_challenge():
    hs = auth.ClientHandshake(ClientHello(vm_id=5), SECRET)
    hs.start()
    with pytest.raises(ConnectionError, match="challenge"):
        hs.receive(PortRegister(vm_id=5, vm_port=1, hwaddress="02:00:00:00:00:01"))
    assert not hs.done


def test_client_handshake_without_a_secret_is_the_hello():
    hello = ClientHello(vm_id=5)
    hs = auth.ClientHandshake(hello, None)
    assert hs.start() == [hello] and hs.done
