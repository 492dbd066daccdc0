-- Pruning by age (storage.retention.*) reads these in time order.
CREATE INDEX rejects_by_created_at ON rejects (created_at);
CREATE INDEX commands_by_finished_at ON commands (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX inbox_files_by_committed_at ON inbox_files (committed_at);
CREATE INDEX webhook_seen_by_received_at ON webhook_seen (received_at);
