"""An active outranks a peer that was active at a higher epoch it never heard.

Found by the campaign (seed 6005, fault 236-238): the secondary, isolated,
took over at epoch 150 while the primary stayed active at 149; the
secondary's node then reloaded (its vemmgr crash-looped), not through a
split-brain resolution, and came back as standby still at 150 (durable). The
primary stayed at 149: the standby's sync refused it ("standby epoch 150 is
newer than this active's epoch 149") and VEMs that attached to the secondary
at 150 ignored the primary's frames as stale. The pair never got back to HA.
"""

from __future__ import annotations

from openvsm.config import Timers
from openvsm.redundancy import engine as eng
from openvsm.redundancy.engine import HaState, Iface

from .enginesim import SimNet

SEED = Timers(1.0, 15.0, 5.0)


def test_an_active_takes_an_epoch_above_a_returning_peer_that_was_active_unheard() -> None:
    net = SimNet(SEED)
    net.start_all()
    net.run_until(10.0)
    p, s = net.engine("primary"), net.engine("secondary")
    assert (p.state, s.state) == (HaState.ACTIVE, HaState.STANDBY)
    first = p.epoch
    # The secondary is isolated from the primary and takes over, unheard.
    for iface in (Iface.CONTROL, Iface.MGMT):
        net.cut(iface)
    net.run_until(40.0)
    assert net.engine("secondary").state is HaState.ACTIVE
    taken = net.engine("secondary").epoch
    assert taken > first and p.epoch == first
    # Its node dies (not a resolution) and boots again with the network healed.
    net.kill("secondary")
    for iface in (Iface.CONTROL, Iface.MGMT):
        net.heal(iface)
    t_boot = net.now
    net.restart("secondary")
    net.run_until(t_boot + 20.0)
    p, s = net.engine("primary"), net.engine("secondary")
    assert (p.state, s.state) == (HaState.ACTIVE, HaState.STANDBY)
    assert p.epoch > taken, "the active must fence the epoch its peer used"
    assert s.epoch == p.epoch, "the standby follows the active's new epoch"
    node = net.node("primary")
    assert node.of(eng.SwitchRequestNeeded, since=t_boot), "VEMs are asked to follow"
    assert any(f.facts.epoch == p.epoch for _, f in node.of(eng.PersistFacts, since=t_boot))
    assert any("unheard here" in t for t in node.traces())


def test_a_standby_of_a_lower_epoch_changes_nothing() -> None:
    """The usual case: the standby follows the active's epoch; no new epoch."""
    net = SimNet(SEED)
    net.start_all()
    net.run_until(10.0)
    epoch = net.engine("primary").epoch
    t0 = net.now
    net.restart("secondary")
    net.run_until(t0 + 20.0)
    assert net.engine("primary").epoch == epoch
    assert not net.node("primary").of(eng.SwitchRequestNeeded, since=t0)
