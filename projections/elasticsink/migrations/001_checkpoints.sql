-- What elasticsink keeps next to pgsink's checkpoints, one row per
-- checkpoint (a projection's, or the one its rebuild builds a generation
-- under).
--
-- {{schema}} is replaced with the quoted schema name before this runs.

CREATE TABLE {{schema}}.elasticsink_checkpoints (
    name    text   PRIMARY KEY,
    -- The external version given to the last event applied: each batch
    -- numbers its events on from here, and moves it in the transaction
    -- that moves the checkpoint. It never goes down, not even when the
    -- checkpoint is reset to an earlier position.
    version bigint NOT NULL DEFAULT 0,
    -- The concrete indices the checkpoint's documents are in, by alias:
    -- {"<alias>": {"index": "<name>", "uuid": "<index.uuid>"}}.
    indices jsonb  NOT NULL DEFAULT '{}'
);
