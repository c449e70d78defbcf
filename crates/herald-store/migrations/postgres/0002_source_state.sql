-- What a source remembers beside its cursor and rebuilds its memory from
-- at start (AT Protocol: the blocks that hide notifications), written in
-- the transaction that advances the cursor.
CREATE TABLE source_state (
    source  TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (source, key)
);
