import GRDB
import WeftStore

/// The schema of the main database, as named migrations (GRDB records which
/// ran in `grdb_migrations`). Never edit a migration that has shipped: add one.
///
/// The first migration is the seed's relational schema (users, workflows,
/// tasks, workflow_executions, task_executions, workflow_collaborators) with
/// opaque text ids and UTC timestamps, plus the tables later features need.
/// Logs live in the separate log database (SQLiteLogStore). The later
/// features' migrations are in `SQLiteMigrations+<feature>.swift`, applied
/// in the order `migrator` calls them.
enum SQLiteMigrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-seed-schema") { db in
            try db.execute(sql: """
                CREATE TABLE users (
                    id            TEXT PRIMARY KEY NOT NULL,
                    email         TEXT NOT NULL COLLATE NOCASE UNIQUE,
                    password_hash TEXT NOT NULL,
                    name          TEXT NOT NULL,
                    created_at    DATETIME NOT NULL,
                    updated_at    DATETIME NOT NULL
                );
                CREATE TABLE workflows (
                    id          TEXT PRIMARY KEY NOT NULL,
                    user_id     TEXT NOT NULL REFERENCES users(id),
                    name        TEXT NOT NULL,
                    description TEXT NOT NULL DEFAULT '',
                    version     INTEGER NOT NULL CHECK (version >= 1),
                    created_at  DATETIME NOT NULL,
                    updated_at  DATETIME NOT NULL,
                    deleted_at  DATETIME
                );
                CREATE INDEX workflows_by_owner ON workflows(user_id, id);
                CREATE TABLE tasks (
                    id          TEXT PRIMARY KEY NOT NULL,
                    workflow_id TEXT NOT NULL REFERENCES workflows(id),
                    key         TEXT NOT NULL,
                    name        TEXT NOT NULL,
                    description TEXT NOT NULL DEFAULT '',
                    action      TEXT NOT NULL,
                    config      TEXT NOT NULL DEFAULT '{}',
                    depends_on  TEXT NOT NULL DEFAULT '[]',
                    retry       TEXT,
                    timeout_ms  INTEGER CHECK (timeout_ms IS NULL OR timeout_ms > 0),
                    position    INTEGER NOT NULL,
                    created_at  DATETIME NOT NULL,
                    updated_at  DATETIME NOT NULL,
                    -- Tasks removed from a definition stay for the executions that ran them.
                    deleted_at  DATETIME
                );
                CREATE INDEX tasks_by_workflow ON tasks(workflow_id, position) WHERE deleted_at IS NULL;
                CREATE UNIQUE INDEX tasks_unique_key ON tasks(workflow_id, key) WHERE deleted_at IS NULL;
                CREATE TABLE workflow_executions (
                    execution_id     TEXT PRIMARY KEY NOT NULL,
                    workflow_id      TEXT NOT NULL REFERENCES workflows(id),
                    workflow_version INTEGER NOT NULL,
                    status           TEXT NOT NULL CHECK (status IN
                        ('Pending', 'Running', 'Completed', 'Failed', 'Cancelled', 'TimedOut')),
                    input            TEXT NOT NULL DEFAULT '{}',
                    output           TEXT,
                    error            TEXT,
                    idempotency_key  TEXT,
                    trigger          TEXT NOT NULL DEFAULT 'api',
                    cost             REAL NOT NULL DEFAULT 0,
                    created_by       TEXT REFERENCES users(id),
                    created_at       DATETIME NOT NULL,
                    started_at       DATETIME,
                    completed_at     DATETIME
                );
                CREATE INDEX executions_by_workflow ON workflow_executions(workflow_id, execution_id);
                CREATE INDEX executions_by_status ON workflow_executions(status, execution_id);
                CREATE UNIQUE INDEX executions_idempotency
                    ON workflow_executions(workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
                CREATE TABLE task_executions (
                    task_execution_id TEXT PRIMARY KEY NOT NULL,
                    task_id           TEXT NOT NULL REFERENCES tasks(id),
                    execution_id      TEXT NOT NULL REFERENCES workflow_executions(execution_id),
                    status            TEXT NOT NULL CHECK (status IN ('Pending', 'Queued', 'Running',
                        'Completed', 'Failed', 'Retrying', 'Skipped', 'Cancelled')),
                    attempt           INTEGER NOT NULL DEFAULT 0,
                    output            TEXT,
                    error             TEXT,
                    started_at        DATETIME,
                    completed_at      DATETIME,
                    UNIQUE (execution_id, task_id)
                );
                CREATE TABLE workflow_collaborators (
                    workflow_id TEXT NOT NULL REFERENCES workflows(id),
                    user_id     TEXT NOT NULL REFERENCES users(id),
                    role        TEXT NOT NULL CHECK (role IN ('viewer', 'editor')),
                    added_at    DATETIME NOT NULL,
                    PRIMARY KEY (workflow_id, user_id)
                );
                CREATE INDEX collaborators_by_user ON workflow_collaborators(user_id, workflow_id);
                """)
        }
        migrator.registerMigration("v2-feature-tables") { db in
            try db.execute(sql: """
                CREATE TABLE workflow_versions (
                    id          TEXT PRIMARY KEY NOT NULL,
                    workflow_id TEXT NOT NULL REFERENCES workflows(id),
                    version     INTEGER NOT NULL,
                    name        TEXT NOT NULL,
                    description TEXT NOT NULL,
                    definition  TEXT NOT NULL,
                    label       TEXT NOT NULL DEFAULT '',
                    created_by  TEXT NOT NULL,
                    created_at  DATETIME NOT NULL,
                    UNIQUE (workflow_id, version)
                );
                CREATE TABLE schedules (
                    id          TEXT PRIMARY KEY NOT NULL,
                    workflow_id TEXT NOT NULL REFERENCES workflows(id),
                    cron        TEXT NOT NULL,
                    timezone    TEXT NOT NULL,
                    input       TEXT NOT NULL DEFAULT '{}',
                    paused      INTEGER NOT NULL DEFAULT 0,
                    next_run_at DATETIME,
                    created_by  TEXT NOT NULL,
                    created_at  DATETIME NOT NULL
                );
                CREATE INDEX schedules_due ON schedules(next_run_at) WHERE paused = 0;
                CREATE TABLE subscriptions (
                    id          TEXT PRIMARY KEY NOT NULL,
                    workflow_id TEXT NOT NULL REFERENCES workflows(id),
                    user_id     TEXT NOT NULL REFERENCES users(id),
                    event_type  TEXT NOT NULL,
                    notify_via  TEXT NOT NULL,
                    destination TEXT NOT NULL,
                    created_at  DATETIME NOT NULL
                );
                CREATE INDEX subscriptions_by_workflow ON subscriptions(workflow_id);
                CREATE TABLE integrations (
                    id          TEXT PRIMARY KEY NOT NULL,
                    workflow_id TEXT NOT NULL REFERENCES workflows(id),
                    type        TEXT NOT NULL,
                    -- AES-256-GCM sealed; never stored in clear.
                    secret      BLOB,
                    config      TEXT NOT NULL DEFAULT '{}',
                    created_at  DATETIME NOT NULL,
                    updated_at  DATETIME NOT NULL
                );
                CREATE INDEX integrations_by_workflow ON integrations(workflow_id);
                -- Who did what and when (seed, section 6).
                CREATE TABLE audit_log (
                    id            INTEGER PRIMARY KEY AUTOINCREMENT,
                    at            DATETIME NOT NULL,
                    actor_id      TEXT NOT NULL,
                    action        TEXT NOT NULL,
                    resource_type TEXT NOT NULL,
                    resource_id   TEXT NOT NULL,
                    detail        TEXT NOT NULL DEFAULT '{}'
                );
                CREATE INDEX audit_by_resource ON audit_log(resource_type, resource_id, id);
                -- Side effects (notifications, webhooks) written in the same
                -- transaction as the change that causes them, delivered later.
                CREATE TABLE outbox (
                    id              INTEGER PRIMARY KEY AUTOINCREMENT,
                    topic           TEXT NOT NULL,
                    payload         TEXT NOT NULL,
                    created_at      DATETIME NOT NULL,
                    attempts        INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at DATETIME NOT NULL,
                    delivered_at    DATETIME,
                    last_error      TEXT
                );
                CREATE INDEX outbox_pending ON outbox(next_attempt_at) WHERE delivered_at IS NULL;
                """)
        }
        migrator.registerMigration("v3-workflow-search") { db in
            // One FTS row per live workflow, written in the same transaction
            // as the workflow. Its rowid is the workflow's `search_rowid`, so
            // updates and deletes find the row by key instead of scanning.
            // bm25 weights: name 10, description 4, task names 2.
            try db.execute(sql: """
                ALTER TABLE workflows ADD COLUMN search_rowid INTEGER;
                CREATE UNIQUE INDEX workflows_search_rowid ON workflows(search_rowid);
                CREATE VIRTUAL TABLE workflow_search USING fts5(
                    name, description, task_names,
                    tokenize = 'unicode61 remove_diacritics 2'
                );
                INSERT INTO workflow_search(workflow_search, rank) VALUES ('rank', 'bm25(10.0, 4.0, 2.0)');
                """)
        }
        migrator.registerMigration("v4-task-queue") { db in
            // The durable queue (QueueStore). A row is one attempt of one task;
            // it is deleted when completed under a valid lease.
            try db.execute(sql: """
                CREATE TABLE task_queue (
                    id               INTEGER PRIMARY KEY AUTOINCREMENT,
                    queue            TEXT NOT NULL,
                    execution_id     TEXT NOT NULL,
                    task_key         TEXT NOT NULL,
                    attempt          INTEGER NOT NULL,
                    priority         INTEGER NOT NULL DEFAULT 0,
                    ready_at         DATETIME NOT NULL,
                    payload          TEXT NOT NULL DEFAULT '{}',
                    enqueued_at      DATETIME NOT NULL,
                    lease_token      TEXT,
                    leased_by        TEXT,
                    lease_expires_at DATETIME,
                    deliveries       INTEGER NOT NULL DEFAULT 0,
                    UNIQUE (execution_id, task_key, attempt)
                );
                CREATE INDEX task_queue_ready ON task_queue(queue, priority DESC, id);
                -- Task states are addressed by the key the execution runs with
                -- (its pinned version), not the task row's current key, which
                -- an edit may change mid-run.
                ALTER TABLE task_executions ADD COLUMN task_key TEXT;
                CREATE UNIQUE INDEX task_executions_by_key ON task_executions(execution_id, task_key);
                """)
        }
        migrator.registerMigration("v5-engine") { db in
            // An execution's queue priority, kept for the tasks it queues
            // after a restart; the timers queue is scanned by due time;
            // leases are found by token.
            try db.execute(sql: """
                ALTER TABLE workflow_executions ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
                CREATE INDEX task_queue_due ON task_queue(queue, ready_at);
                CREATE UNIQUE INDEX task_queue_lease_token ON task_queue(lease_token) WHERE lease_token IS NOT NULL;
                -- Oldest execution first (execution ids are time-ordered):
                -- running executions finish before new ones start, so an
                -- overload delays starts instead of every execution.
                DROP INDEX task_queue_ready;
                CREATE INDEX task_queue_order ON task_queue(queue, priority DESC, execution_id, id);
                """)
        }
        migrator.registerMigration("v6-observability") { db in
            // What an execution was charged (usage and dollars by part; the
            // seed's `cost` column holds the total) and the W3C trace context
            // of its span, so its tasks join the trace of the request that
            // started it, also after a restart.
            try db.execute(sql: """
                ALTER TABLE workflow_executions ADD COLUMN cost_task_attempts INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE workflow_executions ADD COLUMN cost_attempts_dollars REAL NOT NULL DEFAULT 0;
                ALTER TABLE workflow_executions ADD COLUMN cost_worker_seconds REAL NOT NULL DEFAULT 0;
                ALTER TABLE workflow_executions ADD COLUMN cost_compute_dollars REAL NOT NULL DEFAULT 0;
                ALTER TABLE workflow_executions ADD COLUMN cost_requests INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE workflow_executions ADD COLUMN cost_requests_dollars REAL NOT NULL DEFAULT 0;
                ALTER TABLE workflow_executions ADD COLUMN cost_egress_bytes INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE workflow_executions ADD COLUMN cost_egress_dollars REAL NOT NULL DEFAULT 0;
                ALTER TABLE workflow_executions ADD COLUMN trace_parent TEXT;
                ALTER TABLE workflow_executions ADD COLUMN trace_state TEXT;
                """)
        }
        registerTenancy(&migrator)
        registerSchedules(&migrator)
        registerNotifications(&migrator)
        registerAnalytics(&migrator)
        migrator.registerMigration("v13-search-vocabulary") { db in
            // The search index's terms, one row per occurrence, read lazily:
            // `term >= ? LIMIT 1` finds the next term in ~30 µs, which is how
            // a search expands its last word's prefix into the terms it
            // stands for (SQLiteStore+Search.swift). A virtual table: no
            // storage of its own.
            try db.execute(sql: "CREATE VIRTUAL TABLE workflow_search_terms USING fts5vocab(workflow_search, 'instance')")
        }
        migrator.registerMigration("v14-workflow-search-key") { db in
            // A workflow's search row is found by the workflow's INTEGER
            // PRIMARY KEY `rid` (it was `search_rowid`, an ordinary column
            // behind a unique index): a search joins its matches to
            // workflows by rowid, one B-tree lookup a match instead of two,
            // and a create writes one index less. An explicit INTEGER
            // PRIMARY KEY, not the implicit rowid: VACUUM and dumps may
            // renumber implicit rowids, which would pair search rows with
            // other workflows. SQLite cannot add a primary key to a table,
            // so the table is rebuilt (foreign keys are checked after the
            // migration, as GRDB does for every migration). Rows keep their
            // search row's number; rows without one (made before v3) get
            // numbers above every search row.
            try db.execute(sql: """
                CREATE TABLE workflows_v14 (
                    rid         INTEGER PRIMARY KEY,
                    id          TEXT NOT NULL UNIQUE,
                    user_id     TEXT NOT NULL REFERENCES users(id),
                    name        TEXT NOT NULL,
                    description TEXT NOT NULL DEFAULT '',
                    version     INTEGER NOT NULL CHECK (version >= 1),
                    created_at  DATETIME NOT NULL,
                    updated_at  DATETIME NOT NULL,
                    deleted_at  DATETIME,
                    org_id      TEXT REFERENCES organizations(id)
                );
                INSERT INTO workflows_v14 (rid, id, user_id, name, description, version, created_at, updated_at, deleted_at, org_id)
                    SELECT search_rowid, id, user_id, name, description, version, created_at, updated_at, deleted_at, org_id
                    FROM workflows WHERE search_rowid IS NOT NULL ORDER BY search_rowid;
                INSERT INTO workflows_v14 (id, user_id, name, description, version, created_at, updated_at, deleted_at, org_id)
                    SELECT id, user_id, name, description, version, created_at, updated_at, deleted_at, org_id
                    FROM workflows WHERE search_rowid IS NULL ORDER BY rowid;
                DROP TABLE workflows;
                ALTER TABLE workflows_v14 RENAME TO workflows;
                CREATE INDEX workflows_by_owner ON workflows(user_id, id);
                CREATE INDEX workflows_by_org ON workflows(org_id, id);
                """)
        }
        return migrator
    }
}
