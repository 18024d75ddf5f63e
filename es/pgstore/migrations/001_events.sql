-- The event log and snapshots.
--
-- Before this runs, the placeholders in double braces are filled in: schema
-- with the quoted schema name, channel with the notification channel as a
-- string literal, and streamlock and notifylock with the numbers that key the
-- store's advisory locks.
--
-- There is no table of streams: a stream's version is its highest
-- stream_version, one probe of the primary key away, and appends to a stream
-- are serialized with a transaction-level advisory lock keyed by
-- (the streamlock number, the stream's key), which the store computes (a 32-bit
-- FNV-1a hash of the stream ID). That saves the update of a stream row on
-- every append.

CREATE TABLE {{schema}}.events (
    -- Assigned at insert. Transactions commit out of order, so position alone
    -- is not the order in which events become visible; (tx_id, position) is.
    position       bigint      GENERATED ALWAYS AS IDENTITY,
    -- The inserting transaction's ID, or the tx_id of the stream's previous
    -- event when that is higher (see append). Readers only see rows whose
    -- tx_id is below the xmin of their snapshot: no transaction still running
    -- can add a row before those.
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid        NOT NULL,
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL CHECK (stream_version > 0),
    type           text        NOT NULL,
    data           jsonb       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_pkey PRIMARY KEY (stream_id, stream_version),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_log_key UNIQUE (tx_id, position)
);

CREATE TABLE {{schema}}.snapshots (
    stream_id text        PRIMARY KEY,
    version   bigint      NOT NULL,
    revision  text        NOT NULL,
    data      jsonb       NOT NULL,
    taken_at  timestamptz NOT NULL
);

-- append writes events to the end of a stream if its version satisfies the
-- expected version, in one round trip. It reports conflicts and idempotent
-- retries as a status rather than raising, so a caller's transaction stays
-- usable after a version conflict. The store also has a faster single
-- statement for the common case (see append.go), which hands over to this
-- function whenever it cannot decide.
--
-- p_key: the stream's lock key; its low four bits pick its notification
-- locks (see notify.go).
-- p_kind: 0 any, 1 no stream, 2 stream exists, 3 exact (p_expected).
-- p_check: whether any ID came from the caller (and so may be stored already).
-- p_debounce: notify only if a subscriber listens and no other append in
-- flight will notify (see notify.go); false always notifies, for appends in
-- a caller's transaction.
-- status: 0 appended, 1 already stored (idempotent retry), 2 version
-- conflict (o_version is the stream's version), 3 an ID is stored elsewhere
-- (o_duplicate_id).
--
-- The events' tx_id is the greater of this transaction's ID and the tx_id of
-- the stream's last event. A transaction gets its ID when it first writes,
-- which may be before it appends (AppendTx), so a transaction with a lower ID
-- can append after one with a higher ID: taking the higher one keeps every
-- stream in version order in the log. It is still safe for readers: a row's
-- tx_id is never below its writer's ID, so the row stays behind the gate
-- while its writer runs, and every transaction that could still write a
-- lower tx_id has an ID below it and so holds the gate too.
CREATE FUNCTION {{schema}}.append(
    p_stream   text,
    p_key      integer,
    p_kind     smallint,
    p_expected bigint,
    p_check    boolean,
    p_debounce boolean,
    p_ids      uuid[],
    p_types    text[],
    p_data     jsonb[],
    p_metadata jsonb[],
    OUT o_status       smallint,
    OUT o_version      bigint,
    OUT o_tx_id        xid8,
    OUT o_position     bigint,
    OUT o_duplicate_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    n        bigint := cardinality(p_ids);
    cur      bigint;
    last_tx  xid8;
    stored   bigint;
    in_place bigint;
    base_min bigint;
    base_max bigint;
BEGIN
    -- Held until the transaction ends. Each statement below takes a new
    -- snapshot, so it sees what the previous holder committed.
    PERFORM pg_advisory_xact_lock({{streamlock}}, p_key);

    SELECT e.stream_version, e.tx_id INTO cur, last_tx
      FROM {{schema}}.events e
     WHERE e.stream_id = p_stream
     ORDER BY e.stream_version DESC
     LIMIT 1;
    IF NOT FOUND THEN
        cur := 0;
    END IF;

    IF p_check THEN
        SELECT count(e.event_id),
               count(e.event_id) FILTER (WHERE e.stream_id = p_stream),
               min(e.stream_version - u.ord) FILTER (WHERE e.stream_id = p_stream),
               max(e.stream_version - u.ord) FILTER (WHERE e.stream_id = p_stream),
               (array_agg(u.id ORDER BY u.ord) FILTER (WHERE e.event_id IS NOT NULL))[1]
          INTO stored, in_place, base_min, base_max, o_duplicate_id
          FROM unnest(p_ids) WITH ORDINALITY AS u(id, ord)
          LEFT JOIN {{schema}}.events e ON e.event_id = u.id;
        IF stored > 0 THEN
            IF stored = n AND in_place = n AND base_min = base_max
               AND (p_kind NOT IN (1, 3) OR base_min = p_expected) THEN
                o_status := 1;
                o_duplicate_id := NULL;
                SELECT e.stream_version, e.tx_id, e.position
                  INTO o_version, o_tx_id, o_position
                  FROM {{schema}}.events e
                 WHERE e.event_id = p_ids[n];
            ELSE
                o_status := 3;
            END IF;
            RETURN;
        END IF;
    END IF;

    IF NOT (CASE p_kind
                WHEN 1 THEN cur = 0
                WHEN 2 THEN cur > 0
                WHEN 3 THEN cur = p_expected
                ELSE true
            END) THEN
        o_status := 2;
        o_version := cur;
        RETURN;
    END IF;

    o_status := 0;
    o_version := cur + n;
    o_tx_id := greatest(last_tx, pg_current_xact_id());
    WITH ins AS (
        INSERT INTO {{schema}}.events (tx_id, event_id, stream_id, stream_version, type, data, metadata)
        SELECT o_tx_id, u.id, p_stream, cur + u.ord, u.type, u.data, u.meta
          FROM unnest(p_ids, p_types, p_data, p_metadata) WITH ORDINALITY AS u(id, type, data, meta, ord)
         ORDER BY u.ord
        RETURNING position
    )
    SELECT max(ins.position) INTO o_position FROM ins;

    IF NOT p_debounce THEN
        PERFORM pg_notify({{channel}}, '');
    ELSIF NOT pg_try_advisory_xact_lock({{notifylock}}, 18 + (p_key & 15)) THEN
        -- A subscriber listens (or another append has the same lock): mark
        -- this append as in flight, and notify unless another append will.
        PERFORM pg_advisory_xact_lock_shared({{notifylock}}, 2 + (p_key & 15));
        IF pg_try_advisory_xact_lock({{notifylock}}, 1) THEN
            PERFORM pg_notify({{channel}}, '');
        END IF;
    END IF;
END
$$;
