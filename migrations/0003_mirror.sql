-- Both directions (CONTRACT §4, §7).

-- Edits other programs make to the mirror, written by triggers (so edits made while the daemon
-- is down are kept too) and consumed by the mirror poller in the transaction that queues them.
CREATE TABLE mirror_changes (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    phone TEXT NOT NULL,
    op    TEXT NOT NULL CHECK (op IN ('I', 'U', 'D'))
);

-- Holds a row only inside the daemon's own write transactions (inserted first, deleted before
-- commit, so no other connection ever sees it): the daemon's writes are not journaled, and
-- cannot come back to it as changes.
CREATE TABLE mirror_quiet (
    k INTEGER PRIMARY KEY
);

CREATE TRIGGER mirror_journal_insert AFTER INSERT ON contacts
FOR EACH ROW WHEN NOT EXISTS (SELECT 1 FROM mirror_quiet)
BEGIN
    INSERT INTO mirror_changes (phone, op) VALUES (NEW.phone, 'I');
END;

CREATE TRIGGER mirror_journal_update AFTER UPDATE ON contacts
FOR EACH ROW WHEN NOT EXISTS (SELECT 1 FROM mirror_quiet)
BEGIN
    INSERT INTO mirror_changes (phone, op) VALUES (NEW.phone, 'U');
    INSERT INTO mirror_changes (phone, op) SELECT OLD.phone, 'D' WHERE OLD.phone IS NOT NEW.phone;
END;

CREATE TRIGGER mirror_journal_delete AFTER DELETE ON contacts
FOR EACH ROW WHEN NOT EXISTS (SELECT 1 FROM mirror_quiet)
BEGIN
    INSERT INTO mirror_changes (phone, op) VALUES (OLD.phone, 'D');
END;

-- Webhook deliveries already applied: `webhook-id` (contacts) and `event_uuid` (Spoki).
CREATE TABLE webhook_seen (
    source      TEXT NOT NULL,
    id          TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (source, id)
) WITHOUT ROWID;

-- Deletions to carry out: to Spoki (a row deleted from the mirror, with propagate_deletes)
-- or to the mirror (a contact gone from Spoki). 'held' ones wait for confirmation through the
-- admin API because their cycle would delete more than mirror.max_delete_share.
CREATE TABLE deletes (
    phone      TEXT NOT NULL,
    direction  TEXT NOT NULL CHECK (direction IN ('to_spoki', 'to_mirror')),
    spoki_id   INTEGER NULL,
    state      TEXT NOT NULL CHECK (state IN ('held', 'ready')),
    created_at TEXT NOT NULL,
    PRIMARY KEY (phone, direction)
) WITHOUT ROWID;

CREATE INDEX contact_state_by_spoki_id ON contact_state (spoki_id);
