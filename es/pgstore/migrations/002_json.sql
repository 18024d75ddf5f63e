-- Event data, event metadata and snapshot data are stored as json, not
-- jsonb: the text as the client sent it (the client checks that it is valid
-- JSON, and the server checks it again on input). jsonb has to be parsed on
-- every write and printed as text on every read, which was most of the
-- server's work on a read of the log; json is kept and sent as it is. Every
-- value can still be queried (data->>'key') and cast to jsonb for an index
-- on an expression ((data::jsonb) ...), because the store refuses what jsonb
-- cannot hold (\u0000, unpaired surrogates) before it is written.
--
-- Existing rows are converted: ALTER COLUMN ... TYPE rewrites the tables and
-- rebuilds their indexes, holding an ACCESS EXCLUSIVE lock meanwhile, so
-- appends and reads wait (9 s for a million events of 300 bytes on a 2-core
-- machine); values already stored keep the normalized text jsonb printed
-- for them.
--
-- The append function takes json[] instead of jsonb[]; apart from that it is
-- the function of 001_events, unchanged.

ALTER TABLE {{schema}}.events
    ALTER COLUMN data TYPE json USING data::json,
    ALTER COLUMN metadata DROP DEFAULT,
    ALTER COLUMN metadata TYPE json USING metadata::json,
    ALTER COLUMN metadata SET DEFAULT '{}';

ALTER TABLE {{schema}}.snapshots
    ALTER COLUMN data TYPE json USING data::json;

DROP FUNCTION {{schema}}.append(text, integer, smallint, bigint, boolean, boolean, uuid[], text[], jsonb[], jsonb[]);

CREATE FUNCTION {{schema}}.append(
    p_stream   text,
    p_key      integer,
    p_kind     smallint,
    p_expected bigint,
    p_check    boolean,
    p_debounce boolean,
    p_ids      uuid[],
    p_types    text[],
    p_data     json[],
    p_metadata json[],
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
