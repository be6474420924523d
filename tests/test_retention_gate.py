"""The deletion gate: what stops a retention run from deleting, in which order, and how the run ends."""

from __future__ import annotations

from consent_lifecycle.retention.gate import Gate, deletion_gate, kill_switch_enabled, run_ending


def gate(due: int = 5, *, dry_run: bool = False, enabled: bool = True, max_deletions: int = 10) -> Gate:
    return deletion_gate(due, dry_run=dry_run, enabled=enabled, max_deletions=max_deletions)


def test_a_dry_run_deletes_nothing_whatever_else_holds():
    stopped = gate(due=50, dry_run=True, enabled=False, max_deletions=1)
    assert not stopped.proceed and not stopped.failed
    assert stopped.message == "Dry run: 50 due, nothing deleted"


def test_nothing_due_then_kill_switch_then_the_cap():
    assert gate(due=0, enabled=False).message == "Nothing due: no deletion item is due"
    off = gate(enabled=False)
    assert not off.proceed and not off.failed
    assert off.message == "Deletions disabled: consent-deletions-enabled is off, 5 due, nothing deleted"
    capped = gate(due=11, max_deletions=10)
    assert not capped.proceed and capped.failed and capped.over_cap
    assert "11 deletions due exceed max_deletions=10" in capped.message
    assert gate(due=10, max_deletions=10).proceed


def test_the_run_fails_when_an_item_failed_and_says_how_many_were_deleted_otherwise():
    outcomes = [{"status": "done", "error": None}, {"status": "retrying", "error": "HTTP 503"}]
    failed = run_ending(gate(), outcomes)
    assert failed.failed and failed.message == "1 of 2 deletions failed: HTTP 503"
    done = run_ending(gate(), outcomes[:1])
    assert not done.failed and done.message == "1 deletions executed"
    assert run_ending(gate(dry_run=True), []) == gate(dry_run=True)


def test_the_kill_switch_reads_false_like_values_as_off():
    assert not any(kill_switch_enabled(v) for v in (False, "false", " OFF ", "0", "no", "disabled"))
    assert all(kill_switch_enabled(v) for v in (True, "true", "1", "yes", None))
