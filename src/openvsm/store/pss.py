"""Persistent store (PSS) of one VSM node (DESIGN §4).

One SQLite file per node, WAL journal, ``synchronous=FULL``: a change that
``commit`` returned is on disk. The file holds

- ``objects``: the configuration as generic objects ``(kind, key) -> body``
  (a JSON dict; kinds and body keys are listed in docs/CONTRACTS.md), with
  the body's ``owner`` ("cli", "openstack", ...) as its own column;
- ``changes``: the change log, one row per committed change with a gapless,
  monotonically increasing sequence number (``last_seq``), trimmed to the
  newest ``max_changes`` rows. Replication tails it (``changes_since``); a
  standby too far behind gets a ``Snapshot`` instead;
- ``accounting``: the accounting log (``show accounting log``). Entries of
  committed changes carry their seq and are replicated with the change;
  entries written with ``account`` (failed commands...) stay local; it is
  bounded like the change log, and the local entries by their own trim
  (``MAX_LOCAL_ACCOUNTING``, checked every ``_ACCOUNT_TRIM_EVERY`` calls:
  failed logins without any change cannot grow it);
- ``facts``: node facts (last_config_time, last_active_time, epoch,
  peer_macs, ...), JSON values, never replicated. ``last_config_time`` is
  the time of the last *configuration* change (split-brain rule 2): changes
  whose source is in ``STATE_SOURCES`` (vemmgr's module and vEth
  bookkeeping: a VEM attaching is not configuration) do not move it;
- ``meta`` and ``schema_version``: internal counters and the schema version.

An existing file shorter than one SQLite page (zero-length, truncated) is
refused with a ``StoreError`` too: SQLite would silently take it for a new,
empty database.

Schema versions: an older file is migrated in one transaction on open
(``_MIGRATIONS``); a newer, foreign or corrupted file is refused with a
``StoreError`` that says what is wrong. It is never reinitialised silently:
the operator decides (move the file away to start empty).

Not thread-safe: one ``Store`` belongs to one thread (the service's event
loop). Pipelined commit (``openvsm.store.writer``): the loop ``prepare``s a
change (validated, seq ``head_seq + 1``, kept in flight), a writer thread
commits groups of them on its own connection, and the loop learns of it
with ``durable(upto)`` (``last_seq`` is the newest durable seq) or drops
them with ``abandon(from_seq)``. ``changes_since`` includes the changes in
flight; reads that span several statements (``snapshot``, ``digest``,
``changes_since``) run in one read transaction, so a concurrent group
commit is seen entirely or not at all.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from openvsm.contracts.objects import BodyError, check_body
from openvsm.wire.messages import AccountingEntry

SCHEMA_VERSION: Final = 2
APPLICATION_ID: Final = 0x4F56534D  # "OVSM" in the SQLite header: this is our file
DEFAULT_MAX_CHANGES: Final = 100_000
_TRIM_EVERY: Final = 1000  # trim the change log once per this many changes
MAX_LOCAL_ACCOUNTING: Final = 10_000  # local entries (failures, refusals) kept
_ACCOUNT_TRIM_EVERY: Final = 100  # ``account`` trims the local entries this often
# Change sources that record state, not configuration: they leave last_config_time.
STATE_SOURCES: Final = frozenset({"vemmgr"})


class StoreError(Exception):
    """The store cannot do what was asked; the text is meant for an operator."""


class BodyRefused(StoreError):
    """A new body does not match its kind's contract (nothing was written)."""


class ChangeLogTrimmed(StoreError):
    """``changes_since`` asked for changes older than the change log keeps."""


class Op(msgspec.Struct, frozen=True):
    """One object write of a change; ``body=None`` deletes the object."""

    kind: str
    key: str
    body: dict[str, Any] | None


class Change(msgspec.Struct, frozen=True):
    """A committed change: the unit of the change log and of replication."""

    seq: int
    time: float  # wall-clock seconds (display, split-brain "last config time")
    user: str
    source: str  # "cli" | "rest" | "ipc" | ...
    command: str
    ops: tuple[Op, ...]
    epoch: int = 0


class Snapshot(msgspec.Struct, frozen=True):
    """Everything a standby needs to equal the active at ``last_seq``."""

    last_seq: int
    objects: tuple[Op, ...]  # every object, as an Op with its body
    accounting: tuple[AccountingEntry, ...]  # replicated entries only
    last_config_time: float = 0.0
    last_change_time: float = 0.0  # time of change ``last_seq`` (any source)


_json_enc = msgspec.json.Encoder(order="sorted")
_json_dec = msgspec.json.Decoder(dict[str, Any])
_any_json_dec = msgspec.json.Decoder()
_ops_enc = msgspec.msgpack.Encoder()
_ops_dec = msgspec.msgpack.Decoder(tuple[Op, ...])


# --- schema ----------------------------------------------------------------------

# Version 1, kept verbatim: tests build v1 files from it to test the migration.
SCHEMA_V1: Final = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE objects (
    kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY, time REAL NOT NULL, user TEXT NOT NULL,
    source TEXT NOT NULL, command TEXT NOT NULL, ops BLOB NOT NULL
);
CREATE INDEX changes_time ON changes (time);
CREATE TABLE accounting (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, user TEXT NOT NULL,
    command TEXT NOT NULL, result TEXT NOT NULL, seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE facts (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# v2: objects carry their owner; changes their epoch; accounting entries say
# whether they came with a change (replicated); last_seq survives trimming.
_V1_TO_V2: Final = """
ALTER TABLE objects ADD COLUMN owner TEXT NOT NULL DEFAULT '';
UPDATE objects SET owner = coalesce(json_extract(body, '$.owner'), '')
    WHERE json_valid(body) AND json_type(body, '$.owner') = 'text';
CREATE INDEX objects_owner ON objects (owner);
ALTER TABLE changes ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounting ADD COLUMN replicated INTEGER NOT NULL DEFAULT 0;
UPDATE accounting SET replicated = 1 WHERE seq > 0;
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (name, value) SELECT 'last_seq', coalesce(max(seq), 0) FROM changes;
"""


def _migrate_v1_to_v2(db: sqlite3.Connection) -> None:
    for statement in _V1_TO_V2.split(";"):
        if statement.strip():
            db.execute(statement)
    # Bodies written by v1 were plain JSON; re-encode them canonically so that
    # ``digest`` compares equal with a store that never was v1.
    rows = db.execute("SELECT kind, key, body FROM objects").fetchall()
    for kind, key, body in rows:
        try:
            canonical = _json_enc.encode(_json_dec.decode(body)).decode()
        except msgspec.DecodeError as exc:
            raise StoreError(f"object {kind}/{key} has an unreadable body: {exc}") from None
        db.execute("UPDATE objects SET body = ? WHERE kind = ? AND key = ?", (canonical, kind, key))


# from_version -> migration to from_version + 1
_MIGRATIONS: Final[dict[int, Callable[[sqlite3.Connection], None]]] = {1: _migrate_v1_to_v2}


def _create_latest(db: sqlite3.Connection) -> None:
    """A fresh file: v1 then every migration, so that there is one path to v2."""
    for statement in SCHEMA_V1.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT INTO schema_version (version) VALUES (1)")


def write_ops(db: sqlite3.Connection, ops: Sequence[Op]) -> None:
    """Apply checked ops to ``objects`` (inside the caller's transaction)."""
    for op in ops:
        if op.body is None:
            db.execute("DELETE FROM objects WHERE kind = ? AND key = ?", (op.kind, op.key))
        else:
            db.execute(
                "INSERT OR REPLACE INTO objects (kind, key, body, owner) VALUES (?, ?, ?, ?)",
                (op.kind, op.key, _json_enc.encode(op.body).decode(), _owner(op.body)),
            )


def append_change(db: sqlite3.Connection, change: Change, max_changes: int) -> None:
    """Log ``change`` (change log, accounting, last_seq, times; trimming)."""
    db.execute(
        "INSERT INTO changes (seq, time, user, source, command, ops, epoch)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            change.seq,
            change.time,
            change.user,
            change.source,
            change.command,
            _ops_enc.encode(change.ops),
            change.epoch,
        ),
    )
    db.execute(
        "INSERT INTO accounting (time, user, command, result, seq, replicated)"
        " VALUES (?, ?, ?, 'SUCCESS', ?, 1)",
        (change.time, change.user, change.command, change.seq),
    )
    db.execute("UPDATE meta SET value = ? WHERE name = 'last_seq'", (change.seq,))
    # The time of the last change of any kind is what a standby's Hello
    # proves its history with (sync); the configuration time is rule 2's.
    _put_fact(db, "last_change_time", change.time)
    if change.source not in STATE_SOURCES:
        _put_fact(db, "last_config_time", change.time)
    if change.seq % min(_TRIM_EVERY, max_changes) == 0:
        db.execute("DELETE FROM changes WHERE seq <= ?", (change.seq - max_changes,))
        # the accounting log is bounded the same way (it travels in snapshots)
        db.execute(
            "DELETE FROM accounting WHERE id <= (SELECT max(id) FROM accounting) - ?",
            (max_changes,),
        )


def write_group(db: sqlite3.Connection, changes: Sequence[Change], max_changes: int) -> None:
    """Apply and log ``changes`` in order (inside the caller's transaction): the
    same rows as ``write_ops`` + ``append_change`` per change, with one
    ``executemany`` per statement for each run of changes up to a trim point
    (the store writer's group commit: fewer statements, less Python per change)."""
    start = 0
    for i, change in enumerate(changes):
        if change.seq % min(_TRIM_EVERY, max_changes) == 0 or i == len(changes) - 1:
            _write_run(db, changes[start : i + 1], max_changes)
            start = i + 1


def _write_run(db: sqlite3.Connection, run: Sequence[Change], max_changes: int) -> None:
    """Changes of a group whose only possible trim point is the last one."""
    _write_objects(db, [op for change in run for op in change.ops])
    db.executemany(
        "INSERT INTO changes (seq, time, user, source, command, ops, epoch)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (c.seq, c.time, c.user, c.source, c.command, _ops_enc.encode(c.ops), c.epoch)
            for c in run
        ],
    )
    db.executemany(
        "INSERT INTO accounting (time, user, command, result, seq, replicated)"
        " VALUES (?, ?, ?, 'SUCCESS', ?, 1)",
        [(c.time, c.user, c.command, c.seq) for c in run],
    )
    last = run[-1]
    db.execute("UPDATE meta SET value = ? WHERE name = 'last_seq'", (last.seq,))
    _put_fact(db, "last_change_time", last.time)
    config = [c for c in run if c.source not in STATE_SOURCES]
    if config:
        _put_fact(db, "last_config_time", config[-1].time)
    if last.seq % min(_TRIM_EVERY, max_changes) == 0:
        db.execute("DELETE FROM changes WHERE seq <= ?", (last.seq - max_changes,))
        db.execute(
            "DELETE FROM accounting WHERE id <= (SELECT max(id) FROM accounting) - ?",
            (max_changes,),
        )


def _write_objects(db: sqlite3.Connection, ops: Sequence[Op]) -> None:
    """``write_ops`` with one ``executemany`` per run of puts or deletes (in order:
    a delete and a later put of the same key keep their order)."""
    i = 0
    while i < len(ops):
        delete = ops[i].body is None
        j = i
        while j < len(ops) and (ops[j].body is None) == delete:
            j += 1
        if delete:
            db.executemany(
                "DELETE FROM objects WHERE kind = ? AND key = ?",
                [(op.kind, op.key) for op in ops[i:j]],
            )
        else:
            db.executemany(
                "INSERT OR REPLACE INTO objects (kind, key, body, owner) VALUES (?, ?, ?, ?)",
                [
                    (op.kind, op.key, _json_enc.encode(op.body).decode(), _owner(op.body))
                    for op in ops[i:j]
                    if op.body is not None
                ],
            )
        i = j


def _put_fact(db: sqlite3.Connection, name: str, value: Any) -> None:
    if value is None:
        db.execute("DELETE FROM facts WHERE name = ?", (name,))
    else:
        db.execute(
            "INSERT OR REPLACE INTO facts (name, value) VALUES (?, ?)",
            (name, _json_enc.encode(value).decode()),
        )


def _owner(body: dict[str, Any]) -> str:
    owner = body.get("owner", "")
    return owner if isinstance(owner, str) else ""


# --- store -----------------------------------------------------------------------


def _refuse_empty_file(path: Path) -> None:
    """An existing file too short to be a SQLite database is refused, never reused.

    SQLite would take a zero-length file for a new, empty database: an active
    with such a store would then replicate "nothing" and wipe its standby.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size < 512:  # the smallest SQLite database file (one page) is larger
        raise StoreError(
            f"{path}: the store file is empty or truncated ({size} bytes); refusing to start. "
            "Restore it from a backup, or move it away to start with an empty store."
        )


class Store:
    """The node's PSS. Every write is one SQLite transaction."""

    def __init__(self, path: Path, *, max_changes: int = DEFAULT_MAX_CHANGES) -> None:
        if max_changes < 1:
            raise ValueError("max_changes must be >= 1")
        self.path = Path(path)
        self.max_changes = max_changes
        self._batching = False
        self._accounted = 0  # ``account`` calls since open: its own trim cadence
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _refuse_empty_file(self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from None
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(
                f"{self.path}: not a readable openvsm store ({exc}); refusing to start. "
                "Restore it from a backup, or move it away to start with an empty store."
            ) from None
        except BaseException:
            self._db.close()
            raise
        self._last_seq = int(self._scalar("SELECT value FROM meta WHERE name = 'last_seq'"))
        self._head_seq = self._last_seq
        self._inflight: dict[int, Change] = {}

    def _open(self) -> None:
        db = self._db
        app_id = int(db.execute("PRAGMA application_id").fetchone()[0])
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables):
            raise StoreError(
                f"{self.path}: this SQLite file is not an openvsm store "
                f"(application id {app_id:#x}, tables {sorted(tables)}); refusing to use it"
            )
        check = db.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in check] != ["ok"]:
            detail = "; ".join(str(r[0]) for r in check[:3])
            raise StoreError(
                f"{self.path}: the store is corrupted ({detail}); refusing to start. "
                "Restore it from a backup, or move it away to start with an empty store."
            )
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: cannot switch the store to WAL mode (got {mode})")
        db.execute("PRAGMA synchronous=FULL")
        with self._tx():
            if not tables:
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                _create_latest(db)
            elif "schema_version" not in tables:
                raise StoreError(f"{self.path}: the store has no schema version; refusing it")
            version = int(self._scalar("SELECT max(version) FROM schema_version"))
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: store schema version {version} is newer than this "
                    f"openvsm supports ({SCHEMA_VERSION}); refusing to open it. "
                    "Run the newer openvsm, or restore a backup."
                )
            while version < SCHEMA_VERSION:
                migrate = _MIGRATIONS.get(version)
                if migrate is None:
                    raise StoreError(f"{self.path}: no migration from schema version {version}")
                migrate(db)
                version += 1
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    # --- plumbing ---

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it or nothing (inside ``batch``: a savepoint)."""
        if self._batching:
            self._db.execute("SAVEPOINT write")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK TO write")
                self._db.execute("RELEASE write")
                raise
            self._db.execute("RELEASE write")
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group the writes of the block into one SQLite transaction: one fsync
        (synchronous=FULL) for all of them instead of one each.

        Each write in the block stays all-or-nothing on its own (a savepoint).
        The block's writes are committed when it ends, also when it ends with
        an exception (what was written before it is kept, as without a batch).
        Nothing written in the block is durable before the block ends: report
        or acknowledge those writes after it. A failed final COMMIT rolls the
        whole batch back and raises. Nested batches join the outer one.
        """
        if self._batching:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._batching = True
        last_seq = self._last_seq
        try:
            yield
        finally:
            self._batching = False
            try:
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                self._last_seq = self._head_seq = last_seq
                raise

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._db.execute(sql, params).fetchone()
        if row is None or row[0] is None:
            raise StoreError(f"{self.path}: the store is inconsistent ({sql!r} found nothing)")
        return row[0]

    def close(self) -> None:
        self._db.close()

    def rollback(self) -> None:
        """End the transaction a failed write left open, if any (the store stays usable)."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._scalar("SELECT max(version) FROM schema_version"))

    # --- objects ---

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest change in this store (0: none yet)."""
        return self._last_seq

    @property
    def first_seq(self) -> int:
        """Oldest change still in the change log (``last_seq + 1`` when it is empty)."""
        row = self._db.execute("SELECT min(seq) FROM changes").fetchone()
        return int(row[0]) if row[0] is not None else self._last_seq + 1

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT body FROM objects WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return None if row is None else _json_dec.decode(row[0])

    def list(self, kind: str) -> dict[str, dict[str, Any]]:
        rows = self._db.execute(
            "SELECT key, body FROM objects WHERE kind = ? ORDER BY key", (kind,)
        ).fetchall()
        return {key: _json_dec.decode(body) for key, body in rows}

    def kinds(self) -> builtins.list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT kind FROM objects ORDER BY kind")]

    def _write_ops(self, db: sqlite3.Connection, ops: Sequence[Op]) -> None:
        write_ops(db, ops)

    def _append_change(self, db: sqlite3.Connection, change: Change) -> None:
        append_change(db, change, self.max_changes)

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction (a consistent view beside the writer thread)."""
        if self._batching or self._db.in_transaction:
            yield self._db
            return
        self._db.execute("BEGIN")
        try:
            yield self._db
        finally:
            self._db.execute("COMMIT")

    # --- pipelined commit ---

    @property
    def head_seq(self) -> int:
        """The newest seq assigned: durable (``last_seq``) or in flight."""
        return self._head_seq

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def prepare(
        self,
        ops: Sequence[Op],
        *,
        user: str,
        source: str,
        command: str,
        time: float,
        epoch: int = 0,
    ) -> Change:
        """Validate ``ops`` (each body against its kind's contract,
        ``openvsm.contracts.objects``) and assign them change ``head_seq + 1``,
        in flight (nothing written: a ``StoreWriter`` commits it)."""
        clean = tuple(_contracted(_checked_op(op)) for op in ops)
        change = Change(
            seq=self._head_seq + 1,
            time=time,
            user=user,
            source=source,
            command=command,
            ops=clean,
            epoch=epoch,
        )
        self._inflight[change.seq] = change
        self._head_seq = change.seq
        return change

    def prepare_replicated(self, change: Change) -> bool:
        """Standby, pipelined: order and check a change of the active and keep it
        in flight for the writer thread. False: already here (``seq <=
        head_seq``); a gap raises ``StoreError`` (a bulk sync is needed)."""
        if change.seq <= self._head_seq:
            return False
        if change.seq != self._head_seq + 1:
            raise StoreError(
                f"replicated change {change.seq} does not follow {self._head_seq}: "
                "changes are missing, a bulk synchronisation is needed"
            )
        self._inflight[change.seq] = Change(
            seq=change.seq,
            time=change.time,
            user=change.user,
            source=change.source,
            command=change.command,
            ops=tuple(_checked_op(op) for op in change.ops),
            epoch=change.epoch,
        )
        self._head_seq = change.seq
        return True

    def in_flight_change(self, seq: int) -> Change:
        return self._inflight[seq]

    def durable(self, upto: int) -> None:
        """The writer committed every change in flight up to ``upto``."""
        self._last_seq = max(self._last_seq, upto)
        while self._inflight:
            seq = next(iter(self._inflight))
            if seq > upto:
                break
            del self._inflight[seq]

    def abandon(self, from_seq: int) -> None:
        """The writer could not commit ``from_seq``: it and every later change
        in flight are dropped; their seqs will be assigned again."""
        for seq in [s for s in self._inflight if s >= from_seq]:
            del self._inflight[seq]
        self._head_seq = max(self._last_seq, max(self._inflight, default=0))

    def commit(
        self,
        ops: Sequence[Op],
        *,
        user: str,
        source: str,
        command: str,
        time: float,
        epoch: int = 0,
    ) -> Change:
        """Apply ``ops`` and log them as change ``last_seq + 1``, in one
        transaction: ``prepare`` (validation, nothing written when an op is
        unusable), then the write here instead of in a ``StoreWriter``."""
        if self._inflight:
            raise StoreError("a direct commit while pipelined changes are in flight")
        change = self.prepare(
            ops, user=user, source=source, command=command, time=time, epoch=epoch
        )
        self._write_now(change)
        return change

    def _write_now(self, change: Change) -> None:
        """Write the one change in flight in this thread, or drop it."""
        try:
            with self._tx() as db:
                self._write_ops(db, change.ops)
                self._append_change(db, change)
        except BaseException:
            self.abandon(change.seq)
            raise
        self.durable(change.seq)

    def apply_replicated(self, change: Change) -> bool:
        """Standby: apply a change of the active, exactly once and in order (in
        one transaction here; ``prepare_replicated`` for the writer thread).

        True: applied (``change.seq == last_seq + 1``). False: already applied
        (``seq <= last_seq``, e.g. re-sent after a reconnect). A gap raises
        ``StoreError``: the caller must resynchronise (snapshot).
        """
        if self._inflight:
            raise StoreError("a direct apply while pipelined changes are in flight")
        if not self.prepare_replicated(change):
            return False
        self._write_now(self._inflight[change.seq])
        return True

    # --- change log ---

    def changes_since(self, seq: int, limit: int | None = None) -> builtins.list[Change]:
        """Changes with a sequence number above ``seq``, oldest first.

        Raises ``ChangeLogTrimmed`` when some of them are no longer in the log
        (the caller then sends a snapshot instead).
        """
        if seq >= self._head_seq:
            return []
        out: builtins.list[Change] = []
        if seq < self._last_seq:
            with self._read() as db:
                row = db.execute("SELECT min(seq), max(seq) FROM changes").fetchone()
                first = int(row[0]) if row[0] is not None else self._last_seq + 1
                if seq + 1 < first:
                    raise ChangeLogTrimmed(
                        f"changes after {seq} are no longer in the change log "
                        f"(oldest kept: {first})"
                    )
                sql = (
                    "SELECT seq, time, user, source, command, ops, epoch FROM changes"
                    " WHERE seq > ? ORDER BY seq"
                )
                params: tuple[int, ...] = (seq,)
                if limit is not None:
                    sql += " LIMIT ?"
                    params = (seq, limit)
                out = [_row_change(r) for r in db.execute(sql, params)]
        last = out[-1].seq if out else seq
        for s, change in self._inflight.items():
            if limit is not None and len(out) >= limit:
                break
            if s > last:
                out.append(change)
        return out

    def tail_outweighs_snapshot(self, seq: int, floor_bytes: int) -> bool:
        """Whether the change log after ``seq`` is bigger than a snapshot would be
        worth sending instead: more than ``floor_bytes`` of encoded ops and more
        than half the bytes of every object (an empty or far-behind standby).
        Two aggregate reads, nothing decoded."""
        with self._read() as db:
            tail = db.execute(
                "SELECT coalesce(sum(length(ops)), 0) FROM changes WHERE seq > ?", (seq,)
            ).fetchone()[0]
            if tail <= floor_bytes:
                return False
            objects = db.execute(
                "SELECT coalesce(sum(length(body)) + sum(length(key)), 0) FROM objects"
            ).fetchone()[0]
        return bool(tail * 2 > objects)

    def changes_after_time(self, t: float) -> builtins.list[Change]:
        """Changes committed after wall-clock time ``t`` (split-brain: discarded changes)."""
        rows = self._db.execute(
            "SELECT seq, time, user, source, command, ops, epoch FROM changes"
            " WHERE time > ? ORDER BY seq",
            (t,),
        )
        return [_row_change(r) for r in rows]

    # --- snapshots ---

    def snapshot(self) -> Snapshot:
        """The durable state, read in one transaction (its ``last_seq`` is the
        store file's, which may be ahead of ``last_seq`` beside the writer)."""
        with self._read():
            return self._snapshot()

    def _snapshot(self) -> Snapshot:
        objects = tuple(
            Op(kind=kind, key=key, body=_json_dec.decode(body))
            for kind, key, body in self._db.execute(
                "SELECT kind, key, body FROM objects ORDER BY kind, key"
            )
        )
        accounting = tuple(
            AccountingEntry(time=t, user=u, command=c, result=r, seq=s)
            for t, u, c, r, s in self._db.execute(
                "SELECT time, user, command, result, seq FROM accounting"
                " WHERE replicated = 1 ORDER BY id"
            )
        )
        return Snapshot(
            last_seq=int(self._scalar("SELECT value FROM meta WHERE name = 'last_seq'")),
            objects=objects,
            accounting=accounting,
            last_config_time=float(self.get_fact("last_config_time") or 0.0),
            last_change_time=self.last_change_time(),
        )

    def last_change_time(self) -> float:
        """Time of the last change of any source (a store from before this fact
        existed moved last_config_time with every change: that is the same)."""
        t = self.get_fact("last_change_time")
        if not isinstance(t, int | float):
            t = self.get_fact("last_config_time")
        return float(t) if isinstance(t, int | float) else 0.0

    def load_snapshot(self, snap: Snapshot) -> None:
        """Replace the configuration, change log and replicated accounting atomically.

        Local accounting entries and node facts (other than last_config_time
        and last_change_time) are kept: they belong to this node.
        """
        if self._inflight:
            raise StoreError("a snapshot load while pipelined changes are in flight")
        objects = tuple(_checked_op(op) for op in snap.objects)
        if any(op.body is None for op in objects):
            raise StoreError("a snapshot cannot contain deletions")
        with self._tx() as db:
            db.execute("DELETE FROM objects")
            db.execute("DELETE FROM changes")
            db.execute("DELETE FROM accounting WHERE replicated = 1")
            self._write_ops(db, objects)
            db.executemany(
                "INSERT INTO accounting (time, user, command, result, seq, replicated)"
                " VALUES (?, ?, ?, ?, ?, 1)",
                [(e.time, e.user, e.command, e.result, e.seq) for e in snap.accounting],
            )
            db.execute("UPDATE meta SET value = ? WHERE name = 'last_seq'", (snap.last_seq,))
            self._set_fact(db, "last_config_time", snap.last_config_time)
            self._set_fact(db, "last_change_time", snap.last_change_time)
        self._last_seq = self._head_seq = snap.last_seq

    def digest(self) -> str:
        """SHA-256 over every object, in key order: equal stores, equal digests."""
        h = hashlib.sha256()
        with self._read() as db:
            for kind, key, body in db.execute(
                "SELECT kind, key, body FROM objects ORDER BY kind, key"
            ):
                h.update(f"{kind}\0{key}\0{body}\n".encode())
        return h.hexdigest()

    # --- accounting ---

    def account(self, *, user: str, command: str, result: str, time: float) -> None:
        """Log a command that changed nothing (failed, refused...): local only."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO accounting (time, user, command, result, seq, replicated)"
                " VALUES (?, ?, ?, ?, 0, 0)",
                (time, user, command, result),
            )
            self._accounted += 1
            if self._accounted % _ACCOUNT_TRIM_EVERY == 0:
                # failures arrive without changes: the change-log trim never runs for them
                db.execute(
                    "DELETE FROM accounting WHERE replicated = 0 AND id <= (SELECT id FROM"
                    " accounting WHERE replicated = 0 ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (MAX_LOCAL_ACCOUNTING,),
                )

    def accounting_log(self, limit: int = 1000) -> builtins.list[AccountingEntry]:
        """The newest ``limit`` accounting entries, oldest first."""
        rows = self._db.execute(
            "SELECT time, user, command, result, seq FROM"
            " (SELECT id, time, user, command, result, seq FROM accounting"
            "  ORDER BY id DESC LIMIT ?) ORDER BY id",
            (limit,),
        ).fetchall()
        return [
            AccountingEntry(time=t, user=u, command=c, result=r, seq=s) for t, u, c, r, s in rows
        ]

    # --- node facts ---

    def get_fact(self, name: str) -> Any:
        row = self._db.execute("SELECT value FROM facts WHERE name = ?", (name,)).fetchone()
        return None if row is None else _any_json_dec.decode(row[0])

    def set_fact(self, name: str, value: Any) -> None:
        """Store a JSON-able value durably; ``None`` removes the fact."""
        with self._tx() as db:
            self._set_fact(db, name, value)

    def facts(self) -> dict[str, Any]:
        return {
            name: _any_json_dec.decode(value)
            for name, value in self._db.execute("SELECT name, value FROM facts ORDER BY name")
        }

    @staticmethod
    def _set_fact(db: sqlite3.Connection, name: str, value: Any) -> None:
        _put_fact(db, name, value)


def _checked_op(op: Op) -> Op:
    """Refuse an op the store cannot keep faithfully (before any write)."""
    if not isinstance(op, Op) or not op.kind or not isinstance(op.key, str):
        raise StoreError(f"invalid op {op!r}: needs a kind and a key")
    if op.body is None:
        return op
    if not isinstance(op.body, dict):
        raise StoreError(f"invalid op {op.kind}/{op.key}: the body must be a dict")
    try:
        # JSON round trip: what get() will return is what replication carries.
        body = _json_dec.decode(_json_enc.encode(op.body))
    except (TypeError, msgspec.EncodeError, msgspec.DecodeError) as exc:
        raise StoreError(f"invalid op {op.kind}/{op.key}: body not JSON-able ({exc})") from None
    return op if body == op.body else Op(kind=op.kind, key=op.key, body=body)


def _contracted(op: Op) -> Op:
    """A new body must match its kind's contract. Replicated changes and stored
    bodies are not checked again: the active checked them when it committed."""
    if op.body is not None:
        try:
            check_body(op.kind, op.key, op.body)
        except BodyError as exc:
            raise BodyRefused(f"invalid op {exc}") from None
    return op


def _row_change(row: tuple[Any, ...]) -> Change:
    seq, time, user, source, command, ops, epoch = row
    return Change(
        seq=seq,
        time=time,
        user=user,
        source=source,
        command=command,
        ops=_ops_dec.decode(ops),
        epoch=epoch,
    )
