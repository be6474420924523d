"""Entitlement intervals: when each product's consent covered each (connection, data type), from the ledger.

`replay(events, as_of=t)` answers "what was consented at t" for one t; a reconciliation asks it for every
pull and every product read. Intervals answer all of them with one join: a pull at `t` was consented for
`product` when some interval of (company, connection, data type, product) has `start <= t < end` (`end` NaT
= still open). The rules are replay's (see `consent_lifecycle.ledger.replay`), so the two agree at every
moment (a property test checks it):
- a `granted` event starts an epoch, which ends at the consent's first `revoked` after it or at the next
  `granted` (what came before a grant no longer counts);
- data types are added by `granted`/`extended` and stay until the epoch ends;
- a connection is added by `granted`/`extended` and removed by `disconnected` (or the epoch's end);
- a (connection, data type) pair counts only when the data type comes from that connection's source type.
Events are ordered by `event_id`, as replay orders them.

Ids are UUID text, and hashing or sorting a million strings costs far more than the set operations around
it: both functions turn every key into an integer code once (`pd.factorize`; `sort=True` makes the codes'
order the text's order) and work on the codes, turning codes back into text only for the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.ledger.replay import ADDS
from consent_lifecycle.ledger.views import entitlements_of, usable_connections

INTERVAL_COLUMNS = ["company_id", "connection_id", "data_type", "product", "start", "end"]
#: an int64 later than every instant: where an interval's `end` is NaT (still open)
_NEVER = np.iinfo(np.int64).max


def entitlement_intervals(events: pd.DataFrame, connections: pd.DataFrame) -> pd.DataFrame:
    """Intervals from ledger `events` (`events_frame` columns) for `connections` (id, source_type)."""
    ledger = _Ledger.of(events)
    epochs = _epochs(ledger)
    if not epochs.rows.size:
        return pd.DataFrame(columns=INTERVAL_COLUMNS)
    types = _data_type_spans(ledger, epochs)
    links = _connection_spans(ledger, epochs, connections)
    left, right = _join_positions(types.join_key(), links.join_key())
    start = np.maximum(types.start[left], links.start[right])
    end = np.minimum(types.end[left], links.end[right])
    keep = start < end
    left, right, start, end = left[keep], right[keep], start[keep], end[keep]
    company, product = ledger.company[types.row[left]], ledger.product[types.row[left]]
    data_type, connection = types.code[left], links.code[right]
    key = _combined(
        [company, connection, data_type, product],
        [len(ledger.companies), len(links.names), len(types.names), len(ledger.products)],
    )
    order = np.lexsort((start, key))
    unit = events["at"].dtype
    return pd.DataFrame(
        {
            "company_id": ledger.companies.take(company[order]),
            "connection_id": links.names.take(connection[order]),
            "data_type": types.names.take(data_type[order]),
            "product": ledger.products.take(product[order]),
            "start": _times(start[order], unit),
            "end": _times(end[order], unit),
        }
    )


def covered(
    facts: pd.DataFrame, intervals: pd.DataFrame, *, at: str, on: list[str], fact_id: str
) -> pd.Series:
    """For each row of `facts`, whether some interval matching on `on` contains `facts[at]`.

    A boolean Series aligned with `facts`' index; facts sharing a `fact_id` are covered together. No join:
    the keys become integer codes, the intervals are sorted by (key, start) once, and each fact looks up,
    by binary search, the last interval of its key starting at or before its time; the fact is covered
    when the latest `end` among that key's intervals up to there is after its time.
    """
    if facts.empty:
        return pd.Series(dtype=bool, index=facts.index)
    if intervals.empty:
        return pd.Series(False, index=facts.index)
    fact_keys, interval_keys = key_codes(facts, intervals, on)
    hit = _inside_some(
        fact_keys,
        _nanos(facts[at]),
        interval_keys,
        _nanos(intervals["start"]),
        _nanos(intervals["end"]),
    )
    ids = facts[fact_id]
    if hit.all() or not hit.any():
        return pd.Series(hit, index=facts.index)
    return ids.isin(ids[hit])


def entitlements_at(
    intervals: pd.DataFrame, snapshot: pd.DataFrame, catalog: Catalog, at: datetime
) -> pd.DataFrame:
    """`usable_entitlements(replay(events, at), snapshot, catalog, at)` from `intervals` (those of
    `entitlement_intervals(events, snapshot)`), without replaying the ledger again: the pairs of the
    intervals open at `at`, on the connections usable at `at`, grouped into ENTITLEMENT_COLUMNS."""
    moment = pd.Timestamp(at)
    live = intervals[(intervals["start"] <= moment) & (intervals["end"].isna() | (moment < intervals["end"]))]
    live = live[live["connection_id"].isin(usable_connections(snapshot, catalog, at)["id"])]
    return entitlements_of(live[INTERVAL_COLUMNS[:4]])


def key_codes(facts: pd.DataFrame, table: pd.DataFrame, on: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One int64 code per row of `facts` and per row of `table` for their `on` columns: equal keys, equal
    codes; dense (from 0 to the number of distinct keys); -1 where a key part is missing.

    Each column is coded once (`pd.factorize` of the table's values, then a hash look-up of the facts'),
    so later joins and group-bys run on integers instead of hashing text again.
    """
    fact_parts, table_parts, sizes = [], [], []
    for column in on:
        table_codes, uniques = pd.factorize(table[column])
        fact_codes = uniques.get_indexer(facts[column])
        unseen = np.flatnonzero(fact_codes < 0)  # values only the facts have (or missing)
        extra_codes, extra = pd.factorize(facts[column].array[unseen])
        fact_codes[unseen] = np.where(extra_codes >= 0, extra_codes + len(uniques), -1)
        fact_parts.append(fact_codes)
        table_parts.append(table_codes)
        sizes.append(len(uniques) + len(extra))
    parts = [np.concatenate(pair) for pair in zip(table_parts, fact_parts, strict=True)]
    missing = np.zeros(len(table) + len(facts), dtype=bool)
    for codes in parts:
        missing |= codes < 0
    keys = pd.factorize(_combined([np.maximum(codes, 0) for codes in parts], sizes))[0]
    keys[missing] = -1
    return keys[len(table) :], keys[: len(table)]


def _inside_some(
    fact_keys: np.ndarray, times: np.ndarray, interval_keys: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """For each fact, whether an interval with its key has `start <= time < end` (all int64 nanoseconds;
    a NaT end is open, a NaT time is never covered). Keys are dense codes (below the number of rows)."""
    ends = np.where(ends == _NAT, _NEVER, ends)
    usable = interval_keys >= 0
    interval_keys, starts, ends = interval_keys[usable], starts[usable], ends[usable]
    # (key, start) as one int64: the key, then how many starts are at or before this start
    ranks = np.sort(starts)
    scale = len(ranks) + 1
    composite = interval_keys * scale + _search(ranks, starts)
    order = np.argsort(composite, kind="stable")
    composite, sorted_keys = composite[order], interval_keys[order]
    # the latest end among the key's intervals sorted so far
    reach = pd.Series(ends[order]).groupby(sorted_keys).cummax().to_numpy()
    # each fact's last interval of its key starting at or before its time
    last = _search(composite, fact_keys * scale + _search(ranks, times)) - 1
    safe = np.maximum(last, 0)
    return (
        (fact_keys >= 0)
        & (times != _NAT)
        & (last >= 0)
        & (sorted_keys[safe] == fact_keys)
        & (reach[safe] > times)
    )


def _search(sorted_values: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """`np.searchsorted(sorted_values, needles, side="right")`, the needles searched in sorted order (the
    same answer, far fewer cache misses on big arrays)."""
    order = np.argsort(needles)
    found = np.empty(len(needles), dtype=np.int64)
    found[order] = np.searchsorted(sorted_values, needles[order], side="right")
    return found


_NAT = np.iinfo(np.int64).min  # NaT as int64


def _nanos(times: pd.Series) -> np.ndarray:
    """Instants as int64 nanoseconds since the epoch (UTC when time-zone aware); NaT as `_NAT`."""
    return pd.DatetimeIndex(times.array).as_unit("ns").asi8




# -- the ledger as arrays ------------------------------------------------------------------------

_NAT = np.iinfo(np.int64).min  # NaT as int64
#: the source types data types come from (a data type or connection of another source matches nothing)
_SOURCES = pd.Index(sorted(set(DATA_TYPE_SOURCE.values())))
_SOURCES_SIZE = len(_SOURCES)


@dataclass(frozen=True)
class _Ledger:
    """The events grouped by consent, in ledger order (`event_id`) within each: one array entry per event,
    keys as integer codes, times as int64 nanoseconds."""

    consent: np.ndarray
    company: np.ndarray  # code into `companies` (sorted, so codes sort as the ids do); -1 when missing
    product: np.ndarray  # code into `products` (sorted); -1 when missing
    kind: np.ndarray  # event_type
    at: np.ndarray
    data_types: np.ndarray  # a list per event
    connection_ids: np.ndarray  # a list per event
    companies: pd.Index
    products: pd.Index

    @classmethod
    def of(cls, events: pd.DataFrame) -> _Ledger:
        ordered = events.sort_values("event_id")
        consent = pd.factorize(ordered["consent_id"])[0]
        by_consent = np.argsort(consent, kind="stable")
        by_consent = by_consent[consent[by_consent] >= 0]
        ordered = ordered.iloc[by_consent]
        company, companies = pd.factorize(ordered["company_id"], sort=True)
        product, products = pd.factorize(ordered["product"], sort=True)
        return cls(
            consent=consent[by_consent],
            company=company,
            product=product,
            kind=ordered["event_type"].to_numpy(dtype=object),
            at=_nanos(ordered["at"]),
            data_types=ordered["data_types"].to_numpy(dtype=object),
            connection_ids=ordered["connection_ids"].to_numpy(dtype=object),
            companies=companies,
            products=products,
        )

    def adds(self) -> np.ndarray:
        """Whether each event adds scope (`granted`, `extended`)."""
        return np.isin(self.kind, ADDS)


@dataclass(frozen=True)
class _Epochs:
    """Per event: its epoch (the position of the `granted` event that started it, -1 before any), the
    epoch's end (`_NEVER` while open), and whether the event counts (it is inside an epoch, and no add
    after the epoch's revocation)."""

    epoch: np.ndarray
    end: np.ndarray
    rows: np.ndarray  # positions of the events that count


@dataclass(frozen=True)
class _Spans:
    """Stretches of time a data type (or a connection) was in an epoch's scope: `code` into `names`,
    `source` into `_SOURCES`, `row` one of the events behind each (for its company and product)."""

    epoch: np.ndarray
    code: np.ndarray
    source: np.ndarray
    start: np.ndarray
    end: np.ndarray
    row: np.ndarray
    names: pd.Index

    def subset(self, keep: np.ndarray) -> _Spans:
        return _Spans(
            self.epoch[keep], self.code[keep], self.source[keep], self.start[keep], self.end[keep],
            self.row[keep], self.names,
        )

    def join_key(self) -> np.ndarray:
        """(epoch, source type) as one int64: data types and connections pair up when it is equal."""
        return self.epoch * _SOURCES_SIZE + self.source


def _epochs(ledger: _Ledger) -> _Epochs:
    """Each `granted` starts an epoch; it ends at the epoch's first `revoked` or the consent's next grant."""
    position = np.arange(len(ledger.consent))
    first_of_consent = np.maximum.accumulate(np.where(_starts_run(ledger.consent), position, 0))
    granted = ledger.kind == "granted"
    epoch = np.maximum.accumulate(np.where(granted, position, -1))
    epoch = np.where(epoch >= first_of_consent, epoch, -1)

    ends = np.full(len(position), _NEVER)  # indexed by the epoch's granting event
    grants = np.flatnonzero(granted)
    follows = ledger.consent[grants[1:]] == ledger.consent[grants[:-1]]
    ends[grants[:-1][follows]] = ledger.at[grants[1:][follows]]
    revoked = np.flatnonzero((ledger.kind == "revoked") & (epoch >= 0))
    revoked_epochs, first = np.unique(epoch[revoked], return_index=True)
    ends[revoked_epochs] = np.minimum(ends[revoked_epochs], ledger.at[revoked[first]])

    end = np.where(epoch >= 0, ends[np.maximum(epoch, 0)], _NEVER)
    # nothing after a revocation adds scope until the next grant (a new epoch)
    counts = (epoch >= 0) & ((ledger.at < end) | (end == _NEVER) | ~ledger.adds())
    return _Epochs(epoch=epoch, end=end, rows=np.flatnonzero(counts))


def _data_type_spans(ledger: _Ledger, epochs: _Epochs) -> _Spans:
    """One span per (epoch, company, product, data type): from its first add to the epoch's end."""
    rows = epochs.rows[ledger.adds()[epochs.rows]]
    rows = rows[(ledger.company[rows] >= 0) & (ledger.product[rows] >= 0)]
    rows, codes, names = _exploded(ledger.data_types, rows)
    order, firsts = _runs(
        [epochs.epoch[rows], ledger.company[rows], ledger.product[rows], codes],
        [len(ledger.consent), len(ledger.companies), len(ledger.products), len(names)],
    )
    rows, codes = rows[order], codes[order]
    sources = _SOURCES.get_indexer(names.map(DATA_TYPE_SOURCE))
    spans = _Spans(
        epoch=epochs.epoch[rows[firsts]],
        code=codes[firsts],
        source=sources[codes[firsts]],
        start=np.minimum.reduceat(ledger.at[rows], firsts) if len(firsts) else ledger.at[firsts],
        end=epochs.end[rows[firsts]],
        row=rows[firsts],
        names=names,
    )
    return spans.subset(spans.source >= 0)


def _connection_spans(ledger: _Ledger, epochs: _Epochs, connections: pd.DataFrame) -> _Spans:
    """One span per stretch a connection stayed in an epoch's scope: from an add to the next removal (or
    the epoch's end). Connections missing from the snapshot `connections` (id, source_type) have none."""
    rows = epochs.rows[np.isin(ledger.kind[epochs.rows], (*ADDS, "disconnected"))]
    rows, codes, names = _exploded(ledger.connection_ids, rows)
    # each connection's moves in an epoch, in ledger order
    order, firsts = _runs([epochs.epoch[rows], codes], [len(ledger.consent), len(names)], then=rows)
    rows, codes = rows[order], codes[order]
    added = ledger.adds()[rows]
    first_move = np.zeros(len(rows), dtype=bool)
    first_move[firsts] = True
    # keep the changes only: an add after an add (or a removal after a removal) changes nothing
    changes = np.flatnonzero(added != (np.concatenate(([False], added[:-1])) & ~first_move))
    group = np.cumsum(first_move)[changes]
    next_at = np.full(len(changes), _NEVER)  # the next change of the same connection in the epoch
    next_at[:-1] = np.where(group[1:] == group[:-1], ledger.at[rows[changes[1:]]], _NEVER)
    spans, next_at = changes[added[changes]], next_at[added[changes]]
    span_rows = rows[spans]
    source_of = np.full(len(names), -1)
    known = names.get_indexer(connections["id"])
    source_of[known[known >= 0]] = _SOURCES.get_indexer(connections["source_type"])[known >= 0]
    links = _Spans(
        epoch=epochs.epoch[span_rows],
        code=codes[spans],
        source=source_of[codes[spans]],
        start=ledger.at[span_rows],
        end=np.minimum(next_at, epochs.end[span_rows]),
        row=span_rows,
        names=names,
    )
    return links.subset(links.source >= 0)


def _exploded(lists: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """One entry per item of the lists at `rows`: the row it came from, and the item as a code into the
    sorted distinct items (returned too). Empty lists and missing items give nothing."""
    items = pd.Series(lists[rows], index=rows, dtype=object).explode().dropna()
    codes, names = pd.factorize(items, sort=True)
    return items.index.to_numpy(dtype=np.int64), codes, names


def _starts_run(values: np.ndarray) -> np.ndarray:
    """Whether each entry differs from the one before it (the first always does)."""
    starts = np.ones(len(values), dtype=bool)
    starts[1:] = values[1:] != values[:-1]
    return starts


def _runs(
    keys: list[np.ndarray], sizes: list[int], then: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The order sorting entries by `keys` (each a code below its `sizes`; first key first; ties by `then`),
    and where, in that order, each distinct combination of the keys starts."""
    key = _combined(keys, sizes)
    order = np.argsort(key, kind="stable") if then is None else np.lexsort((then, key))
    return order, np.flatnonzero(_starts_run(key[order]))


def _combined(keys: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """Codes (`keys[i] < sizes[i]`, none negative) as one int64 sorting as the keys do, first key first."""
    if np.prod([float(size) for size in sizes]) < 2**62:
        return np.ravel_multi_index(keys, [max(size, 1) for size in sizes])
    return np.unique(np.stack(keys), axis=1, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _join_positions(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i, j) with left[i] == right[j] (an inner join of two int64 keys), as two position arrays."""
    order = np.argsort(right, kind="stable")
    ordered = right[order]
    low = np.searchsorted(ordered, left, side="left")
    counts = np.searchsorted(ordered, left, side="right") - low
    left_positions = np.repeat(np.arange(len(left)), counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return left_positions, order[np.repeat(low, counts) + within]


def _nanos(times: pd.Series) -> np.ndarray:
    """Instants as int64 nanoseconds since the epoch (UTC when time-zone aware); NaT as `_NAT`."""
    return pd.DatetimeIndex(times.array).as_unit("ns").asi8


def _times(nanos: np.ndarray, dtype: np.dtype | pd.DatetimeTZDtype) -> pd.DatetimeIndex:
    """int64 nanoseconds back to instants of `dtype` (time zone and unit); `_NEVER` becomes NaT."""
    values = pd.DatetimeIndex(np.where(nanos == _NEVER, _NAT, nanos).view("datetime64[ns]"))
    if isinstance(dtype, pd.DatetimeTZDtype):
        return values.tz_localize("UTC").tz_convert(dtype.tz).as_unit(dtype.unit)
    return values.as_unit(np.datetime_data(dtype)[0])
