-- The durable command queue: one row per Spoki action queued through the admin API.
-- queued -> running -> succeeded | failed; `running` means a request may have left.
CREATE TABLE commands (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    action          TEXT NOT NULL,
    params          TEXT NOT NULL,
    -- The rendered request: {"method", "path", "query", "body"}.
    request         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    -- Requests sent, 429s included.
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Retryable failures other than 429 (5xx, timeouts, broken connections).
    failures        INTEGER NOT NULL DEFAULT 0,
    -- An attempt may have reached Spoki without an answer.
    ambiguous       INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    http_status     INTEGER NULL,
    result          TEXT NULL,
    error           TEXT NULL,
    last_error      TEXT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    finished_at     TEXT NULL
);

CREATE INDEX commands_due ON commands (status, next_attempt_ms, seq);
