import GRDB

extension SQLiteMigrations {
    /// Rollups of finished executions, per-task cost and budgets (Step 10; docs/ANALYTICS.md).
    static func registerAnalytics(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v12-analytics") { db in
            // Rollups of finished executions per UTC hour (docs/ANALYTICS.md),
            // written in the transaction of each final transition. Histograms
            // are LogHistogram encodings; times are Unix milliseconds (read
            // by the thousand per query: no date text to parse). WITHOUT ROWID: the key is the order
            // every query reads in (a workflow's hours), so a window is one
            // range of the primary key.
            try db.execute(sql: """
                ALTER TABLE task_executions ADD COLUMN cost REAL NOT NULL DEFAULT 0;
                CREATE TABLE rollup_executions (
                    workflow_id      TEXT NOT NULL,
                    hour             INTEGER NOT NULL,
                    workflow_version INTEGER NOT NULL,
                    trigger          TEXT NOT NULL,
                    status           TEXT NOT NULL,
                    org_id           TEXT NOT NULL DEFAULT '',
                    executions       INTEGER NOT NULL,
                    duration_sum     REAL NOT NULL,
                    duration_squares REAL NOT NULL,
                    duration_max     INTEGER NOT NULL,
                    duration_hist    BLOB NOT NULL,
                    wait_hist        BLOB NOT NULL,
                    cost_sum         REAL NOT NULL,
                    cost_max         REAL NOT NULL,
                    cost_hist        BLOB NOT NULL,
                    retried          INTEGER NOT NULL,
                    attempts         INTEGER NOT NULL,
                    first_created_at INTEGER,
                    last_finished_at INTEGER,
                    PRIMARY KEY (workflow_id, hour, workflow_version, trigger, status)
                ) WITHOUT ROWID;
                CREATE TABLE rollup_org_executions (
                    org_id           TEXT NOT NULL,
                    hour             INTEGER NOT NULL,
                    trigger          TEXT NOT NULL,
                    status           TEXT NOT NULL,
                    executions       INTEGER NOT NULL,
                    duration_sum     REAL NOT NULL,
                    duration_squares REAL NOT NULL,
                    duration_max     INTEGER NOT NULL,
                    duration_hist    BLOB NOT NULL,
                    wait_hist        BLOB NOT NULL,
                    cost_sum         REAL NOT NULL,
                    cost_max         REAL NOT NULL,
                    cost_hist        BLOB NOT NULL,
                    retried          INTEGER NOT NULL,
                    attempts         INTEGER NOT NULL,
                    first_created_at INTEGER,
                    last_finished_at INTEGER,
                    PRIMARY KEY (org_id, hour, trigger, status)
                ) WITHOUT ROWID;
                CREATE TABLE rollup_tasks (
                    workflow_id      TEXT NOT NULL,
                    hour             INTEGER NOT NULL,
                    workflow_version INTEGER NOT NULL,
                    task_key         TEXT NOT NULL,
                    runs             INTEGER NOT NULL,
                    failed           INTEGER NOT NULL,
                    retried          INTEGER NOT NULL,
                    flaky            INTEGER NOT NULL,
                    attempts         INTEGER NOT NULL,
                    duration_sum     REAL NOT NULL,
                    duration_max     INTEGER NOT NULL,
                    duration_hist    BLOB NOT NULL,
                    cost_sum         REAL NOT NULL,
                    critical_runs    INTEGER NOT NULL,
                    critical_sum     REAL NOT NULL,
                    -- "<count> <message>" lines (TaskRollup.errorsText).
                    errors           TEXT NOT NULL DEFAULT '',
                    PRIMARY KEY (workflow_id, hour, workflow_version, task_key)
                ) WITHOUT ROWID;
                CREATE TABLE budgets (
                    scope          TEXT NOT NULL CHECK (scope IN ('workflow', 'organization')),
                    scope_id       TEXT NOT NULL,
                    org_id         TEXT NOT NULL,
                    monthly_limit  REAL NOT NULL,
                    time_zone      TEXT NOT NULL,
                    created_by     TEXT NOT NULL,
                    updated_at     DATETIME NOT NULL,
                    alerted_month  TEXT,
                    alert_level    INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (scope, scope_id)
                );
                """)
        }
    }
}
