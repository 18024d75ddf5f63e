-- The state of Kafka consumers (package consume), in the schema given by
-- Config.Schema.
--
-- {{schema}} is replaced with the quoted schema name before this runs.

-- One row per consumer group: what it is doing, and why it is not when it
-- is not.
CREATE TABLE {{schema}}.kafka_consumers (
    consumer_group   text        PRIMARY KEY,
    -- 'read model' or 'commands'.
    kind             text        NOT NULL,
    -- 'running', 'retrying', 'stalled' (stopped at a message, which
    -- failed_* name) or 'stopped' (Run returned).
    state            text        NOT NULL,
    failure          text        NOT NULL DEFAULT '',
    failed_topic     text,
    failed_partition integer,
    failed_offset    bigint,
    -- Retries of the current transient error, 0 when there is none.
    attempts         integer     NOT NULL DEFAULT 0,
    -- Messages whose command the domain rejected, and messages moved to
    -- the dead-letter topic, since the row was created.
    rejected         bigint      NOT NULL DEFAULT 0,
    dead_lettered    bigint      NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per consumed partition: the offset of the next message to
-- consume. For a read model it is the truth, written in the transaction
-- that writes the rows, and partitions are sought to it when assigned;
-- for commands it mirrors the offset committed to Kafka, for Status.
CREATE TABLE {{schema}}.kafka_offsets (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    next_offset    bigint      NOT NULL,
    -- The partition's high watermark when the offset was written, so that
    -- Status can tell the lag.
    high_watermark bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
