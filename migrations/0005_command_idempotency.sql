-- POST /v1/commands with an Idempotency-Key header: a repeated key returns the first command
-- instead of queueing another. NULL (no header) never conflicts.
ALTER TABLE commands ADD COLUMN idempotency_key TEXT NULL;
CREATE UNIQUE INDEX commands_idempotency_key ON commands (idempotency_key);
