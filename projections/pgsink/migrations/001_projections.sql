-- Checkpoints and dead letters of projections.
--
-- The schema placeholder, in double braces, is replaced with the quoted
-- schema name before this runs.

CREATE TABLE {{schema}}.projection_checkpoints (
    name        text        PRIMARY KEY,
    -- The position of the last event applied (or skipped): es.Position's
    -- Commit and Prepare.
    commit_pos  bigint      NOT NULL DEFAULT 0,
    prepare_pos bigint      NOT NULL DEFAULT 0,
    state       text        NOT NULL DEFAULT 'running'
                CHECK (state IN ('running', 'stalled', 'paused', 'rebuilding')),
    -- The last event the projection could not handle, as a JSON
    -- projections.Failure.
    failure     jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {{schema}}.projection_dead_letters (
    projection     text        NOT NULL,
    event_id       uuid        NOT NULL,
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    commit_pos     bigint      NOT NULL,
    prepare_pos    bigint      NOT NULL,
    type           text        NOT NULL,
    data           bytea       NOT NULL,
    metadata       jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL,
    error          text        NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, event_id)
);

-- Rebuilds in progress: a new generation of a projection's tables, built
-- under the checkpoint named rebuild_name.
CREATE TABLE {{schema}}.projection_rebuilds (
    name         text        PRIMARY KEY,
    rebuild_name text        NOT NULL,
    -- Appended to the names of the new generation's tables.
    suffix       text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    -- The head of the log when the rebuild started, for progress.
    head_commit  bigint      NOT NULL,
    head_prepare bigint      NOT NULL
);
