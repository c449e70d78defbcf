-- Devices, queued deliveries, dedupe keys and source cursors in one file.
-- Times are BIGINT milliseconds since the Unix epoch on every backend.
CREATE TABLE devices (
    id          BIGSERIAL PRIMARY KEY,
    account     TEXT    NOT NULL,
    app_id      TEXT    NOT NULL,
    platform    TEXT    NOT NULL,
    transport   TEXT    NOT NULL,
    token       TEXT    NOT NULL,
    options     TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    UNIQUE (app_id, token)
);
CREATE INDEX devices_by_account ON devices (account);

-- due_at doubles as the lease: a claim moves it to the end of the lease, so
-- "due_at <= now" finds both waiting deliveries and abandoned leases through
-- one index. leased is 1 while an attempt holds the delivery.
CREATE TABLE deliveries (
    id          BIGSERIAL PRIMARY KEY,
    device_id   BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    account     TEXT    NOT NULL,
    app_id      TEXT    NOT NULL,
    platform    TEXT    NOT NULL,
    transport   TEXT    NOT NULL,
    token       TEXT    NOT NULL,
    options     TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    due_at      BIGINT  NOT NULL,
    attempts    BIGINT  NOT NULL DEFAULT 0,
    leased      BIGINT  NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX deliveries_due ON deliveries (transport, due_at);
CREATE INDEX deliveries_by_device ON deliveries (device_id);

CREATE TABLE dedupe (
    device_id   BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    dedupe_key  TEXT    NOT NULL,
    expires_at  BIGINT  NOT NULL,
    PRIMARY KEY (device_id, dedupe_key)
);
CREATE INDEX dedupe_by_expiry ON dedupe (expires_at);

CREATE TABLE cursors (
    source      TEXT    PRIMARY KEY,
    cursor      TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL
);
