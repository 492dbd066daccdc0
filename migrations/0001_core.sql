-- The CRM mirror (CONTRACT §4): other programs read and write this table.
CREATE TABLE contacts (
    phone         TEXT PRIMARY KEY,
    spoki_id      INTEGER NULL,
    first_name    TEXT NULL,
    last_name     TEXT NULL,
    email         TEXT NULL,
    language      TEXT NULL,
    custom_fields TEXT NOT NULL DEFAULT '{}',
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Writers that leave updated_at alone still move it.
CREATE TRIGGER contacts_touch_updated_at AFTER UPDATE ON contacts
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE contacts SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE phone = NEW.phone;
END;

-- What Spoki last acknowledged, per contact: the diff's baseline.
CREATE TABLE contact_state (
    phone         TEXT PRIMARY KEY,
    spoki_id      INTEGER NULL,
    first_name    TEXT NULL,
    last_name     TEXT NULL,
    email         TEXT NULL,
    language      TEXT NULL,
    custom_fields TEXT NOT NULL DEFAULT '{}',
    acked_at      TEXT NOT NULL
) WITHOUT ROWID;

-- List memberships Spoki acknowledged.
CREATE TABLE list_members (
    list_id INTEGER NOT NULL,
    phone   TEXT NOT NULL,
    PRIMARY KEY (list_id, phone)
) WITHOUT ROWID;

-- Contact writes accepted but not yet acknowledged by Spoki. At most one pending row per
-- (phone, list); rows in a request are 'inflight' and never change until the answer.
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    phone         TEXT NOT NULL,
    list_id       INTEGER NOT NULL DEFAULT 0,
    first_name    TEXT NULL,
    last_name     TEXT NULL,
    email         TEXT NULL,
    language      TEXT NULL,
    custom_fields TEXT NOT NULL DEFAULT '{}',
    source        TEXT NOT NULL,
    source_key    TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'inflight')),
    route         TEXT NOT NULL DEFAULT 'any' CHECK (route IN ('any', 'single')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    not_before    INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT NULL,
    enqueued_at   TEXT NOT NULL
);
CREATE UNIQUE INDEX outbox_one_pending ON outbox (phone, list_id) WHERE state = 'pending';
CREATE INDEX outbox_by_phone ON outbox (phone, state);
CREATE INDEX outbox_queue ON outbox (state, list_id, route, id);

-- Rows and contacts refused, with the reason (GET /v1/rejects).
CREATE TABLE rejects (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    source     TEXT NOT NULL,
    key        TEXT NOT NULL,
    phone      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Inbox files whose rows are committed; lets a restart finish a move a crash interrupted.
CREATE TABLE inbox_files (
    path         TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('processed', 'failed')),
    report       TEXT NOT NULL,
    committed_at TEXT NOT NULL,
    moved        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (path, sha256)
);

-- Custom-field codes the contacts use, and whether Spoki has them.
CREATE TABLE custom_fields (
    code   TEXT PRIMARY KEY,
    label  TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('wanted', 'exists', 'failed')),
    reason TEXT NULL
) WITHOUT ROWID;

-- When each action was last called, so a restart keeps the spacing the limits demand.
CREATE TABLE budget_marks (
    action     TEXT PRIMARY KEY,
    last_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
