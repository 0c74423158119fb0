"""The engine through the binding: two engines in one process."""
import pytest

import loramesh as lm
from loramesh.engine import Engine


def pump(engines, rounds=20, now=None):
    """Moves packets between engines named by address; returns events."""
    evs = {n: [] for n in engines}
    for _ in range(rounds):
        for name, e in engines.items():
            for link, addr, pkt in e.packets():
                engines[addr].receive(link, name, pkt, now=now)
        for name, e in engines.items():
            e.tick(now=now)
            evs[name] += list(e.events())
    return evs


@pytest.fixture
def pair(tmp_path):
    a, b = lm.IdentityKey.generate(), lm.IdentityKey.generate()
    ea, eb = Engine(a, str(tmp_path / "a")), Engine(b, str(tmp_path / "b"))
    for e in (ea, eb):
        e.add_link("udp", "udp")
    assert ea.add_contact("b", b.card("Bob")) == "new"
    assert eb.add_contact("a", a.card("Alice")) == "new"
    ea.set_contact_addr("b", "udp", "b")
    eb.set_contact_addr("a", "udp", "a")
    yield {"a": ea, "b": eb}, a, b
    ea.close()
    eb.close()


def test_message_and_delivery(pair):
    es, a, b = pair
    mid = es["a"].send("b", "hello ✓")
    evs = pump(es, now=None)
    import time
    time.sleep(0.05)  # the acknowledgement's delay
    evs2 = pump(es)
    msgs = [e for e in evs["b"] + evs2["b"] if e.kind == "message"]
    assert [m.text for m in msgs] == ["hello ✓"] and msgs[0].contact == "a" and not msgs[0].verified
    states = [e.state for e in evs["a"] + evs2["a"] if e.kind == "delivery" and e.msg_id == mid]
    assert states == ["queued", "sent", "delivered"]
    assert es["a"].contact("b").session


def test_contact_import_results_and_errors(pair, tmp_path):
    es, a, b = pair
    ea = es["a"]
    assert ea.add_contact("b", b.card("Bob")) == "unchanged"
    other = lm.IdentityKey.generate()
    with pytest.raises(lm.KeyChangedError):
        ea.add_contact("b", other.card("Bob"))
    assert ea.add_contact("b", other.card("Bob"), replace=True) == "replaced"
    with pytest.raises(lm.ConflictError):
        ea.add_contact("me", a.card("me"))
    with pytest.raises(lm.BadCardError):
        ea.add_contact("x", b"\x83\x05junk")
    with pytest.raises(lm.InvalidArgumentError):
        ea.add_contact("../x", b.card("Bob"))
    with pytest.raises(lm.NotFoundError):
        ea.send("nobody", "x")
    with pytest.raises(lm.AuthenticationError):
        ea.verify_contact("b", "AAAA-BBBB-CCCC-DDDD")
    with pytest.raises(lm.InUseError, match="process"):
        Engine(a, str(tmp_path / "a"))


def test_state_survives_a_reopen(pair, tmp_path):
    es, a, b = pair
    es["a"].verify_contact("b", lm.ContactCard(b.card("Bob")).fingerprint)
    es["a"].close()
    with Engine(a, str(tmp_path / "a")) as again:
        c = again.contact("b")
        assert c.verified and c.display_name == "Bob"


def files_under(path):
    for root, _, names in __import__("os").walk(path):
        for n in names:
            with open(__import__("os").path.join(root, n), "rb") as f:
                yield n, f.read()


def test_history_is_kept_sealed_and_limited(pair, tmp_path):
    import time
    es, a, b = pair
    texts = ["first secret words", "second secret words", "third secret words"]
    ids = [es["a"].send("b", t) for t in texts]
    for _ in range(3):
        pump(es)
        time.sleep(0.05)  # acknowledgement delays
    sent = list(es["a"].history())
    assert [(e.kind, e.msg_id, e.data.decode(), e.state) for e in sent] == \
        [("delivery", i, t, "delivered") for i, t in zip(ids, texts)]
    got = list(es["b"].history())
    assert [(e.kind, e.contact, e.text) for e in got] == [("message", "a", t) for t in texts]
    assert [e.seq for e in got] == sorted(e.seq for e in got)
    es["b"].close()
    # Kept across a restart, and only sealed: no file holds the text.
    with Engine(b, str(tmp_path / "b")) as again:
        assert [e.text for e in again.history()] == texts
        for name, data in files_under(tmp_path):
            for t in texts:
                assert t.encode() not in data, name
        again.set_history(1)
        assert [e.text for e in again.history()] == texts[-1:]
        again.set_history(0)
        assert list(again.history()) == []
        with pytest.raises(lm.InvalidArgumentError):
            again.set_history(lm._lib.HISTORY_MAX + 1)
    with Engine(b, str(tmp_path / "b")) as again:
        assert list(again.history()) == []  # dropping it was saved too
    es["b"] = Engine(b, str(tmp_path / "b2"))  # for the fixture's close
