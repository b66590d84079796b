import GRDB

extension SQLiteMigrations {
    /// Schedules, backfills, triggers and published events (Step 8).
    static func registerSchedules(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v10-schedules-triggers") { db in
            // Schedules (the seed's table, never written before this step,
            // rebuilt with their policies and progress), backfills, webhook
            // and event triggers, published event ids; and what started an
            // execution (schedule, trigger or event id, and the tick).
            try db.execute(sql: """
                DROP INDEX IF EXISTS schedules_due;
                DROP TABLE schedules;
                CREATE TABLE schedules (
                    id                 TEXT PRIMARY KEY NOT NULL,
                    workflow_id        TEXT NOT NULL REFERENCES workflows(id),
                    org_id             TEXT NOT NULL,
                    cron               TEXT NOT NULL,
                    timezone           TEXT NOT NULL,
                    input              TEXT NOT NULL DEFAULT '{}',
                    description        TEXT NOT NULL DEFAULT '',
                    paused             INTEGER NOT NULL DEFAULT 0,
                    paused_note        TEXT NOT NULL DEFAULT '',
                    start_at           DATETIME,
                    end_at             DATETIME,
                    jitter_ms          INTEGER NOT NULL DEFAULT 0,
                    overlap            TEXT NOT NULL,
                    catch_up           TEXT NOT NULL,
                    catch_up_window_ms INTEGER NOT NULL,
                    next_run_at        DATETIME,
                    last_fire_at       DATETIME,
                    last_execution_id  TEXT,
                    last_skipped_at    DATETIME,
                    last_skip_reason   TEXT,
                    fired_count        INTEGER NOT NULL DEFAULT 0,
                    missed_count       INTEGER NOT NULL DEFAULT 0,
                    skipped_count      INTEGER NOT NULL DEFAULT 0,
                    buffered_tick      DATETIME,
                    created_by         TEXT NOT NULL,
                    created_at         DATETIME NOT NULL,
                    updated_at         DATETIME NOT NULL
                );
                CREATE INDEX schedules_workflow ON schedules(workflow_id, id);
                CREATE INDEX schedules_buffered ON schedules(buffered_tick) WHERE buffered_tick IS NOT NULL;
                CREATE TABLE backfills (
                    id                   TEXT PRIMARY KEY NOT NULL,
                    schedule_id          TEXT NOT NULL,
                    workflow_id          TEXT NOT NULL,
                    start_time           DATETIME NOT NULL,
                    end_time             DATETIME NOT NULL,
                    max_concurrent       INTEGER NOT NULL,
                    status               TEXT NOT NULL,
                    ticks_total          INTEGER NOT NULL,
                    ticks_done           INTEGER NOT NULL DEFAULT 0,
                    ticks_existing       INTEGER NOT NULL DEFAULT 0,
                    executions_completed INTEGER NOT NULL DEFAULT 0,
                    executions_failed    INTEGER NOT NULL DEFAULT 0,
                    last_tick            DATETIME,
                    created_by           TEXT NOT NULL,
                    created_at           DATETIME NOT NULL,
                    finished_at          DATETIME,
                    error                TEXT
                );
                CREATE INDEX backfills_schedule ON backfills(schedule_id, id);
                CREATE INDEX backfills_running ON backfills(status) WHERE status = 'Running';
                CREATE TABLE triggers (
                    id                 TEXT PRIMARY KEY NOT NULL,
                    workflow_id        TEXT NOT NULL REFERENCES workflows(id),
                    org_id             TEXT NOT NULL,
                    kind               TEXT NOT NULL,
                    description        TEXT NOT NULL DEFAULT '',
                    sealed_secret      TEXT,
                    signature_header   TEXT NOT NULL DEFAULT '',
                    timestamp_header   TEXT NOT NULL DEFAULT '',
                    tolerance_seconds  INTEGER NOT NULL DEFAULT 300,
                    idempotency_header TEXT NOT NULL DEFAULT '',
                    event_name         TEXT NOT NULL DEFAULT '',
                    filter             TEXT NOT NULL DEFAULT '',
                    created_by         TEXT NOT NULL,
                    created_at         DATETIME NOT NULL,
                    last_fired_at      DATETIME,
                    fired_count        INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX triggers_workflow ON triggers(workflow_id, id);
                CREATE INDEX triggers_event ON triggers(org_id, event_name) WHERE kind = 'event';
                CREATE TABLE published_events (
                    org_id        TEXT NOT NULL,
                    event_id      TEXT NOT NULL,
                    name          TEXT NOT NULL,
                    execution_ids TEXT NOT NULL,
                    created_at    DATETIME NOT NULL,
                    PRIMARY KEY (org_id, event_id)
                );
                CREATE INDEX published_events_age ON published_events(created_at);
                ALTER TABLE workflow_executions ADD COLUMN trigger_id TEXT;
                ALTER TABLE workflow_executions ADD COLUMN scheduled_at DATETIME;
                """)
        }
    }
}
