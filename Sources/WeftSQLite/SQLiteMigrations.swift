import GRDB
import WeftStore

/// The schema of the main database, as named migrations (GRDB records which
/// ran in `grdb_migrations`). Never edit a migration that has shipped: add one.
///
/// The first migration is the seed's relational schema (users, workflows,
/// tasks, workflow_executions, task_executions, workflow_collaborators) with
/// opaque text ids and UTC timestamps, plus the tables later features need.
/// Logs live in the separate log database (SQLiteLogStore).
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
        migrator.registerMigration("v7-organizations") { db in
            // Tenants. Every existing user gets an organization of their own
            // (its admin), and their workflows move into it.
            try db.execute(sql: """
                CREATE TABLE organizations (
                    id         TEXT PRIMARY KEY NOT NULL,
                    name       TEXT NOT NULL,
                    plan       TEXT NOT NULL,
                    created_at DATETIME NOT NULL
                );
                CREATE TABLE org_members (
                    org_id    TEXT NOT NULL REFERENCES organizations(id),
                    user_id   TEXT NOT NULL REFERENCES users(id),
                    role      TEXT NOT NULL CHECK (role IN ('admin', 'member')),
                    joined_at DATETIME NOT NULL,
                    PRIMARY KEY (org_id, user_id)
                );
                CREATE INDEX org_members_by_user ON org_members(user_id, joined_at);
                CREATE TABLE org_invitations (
                    id           TEXT PRIMARY KEY NOT NULL,
                    org_id       TEXT NOT NULL REFERENCES organizations(id),
                    email        TEXT NOT NULL COLLATE NOCASE,
                    role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
                    invited_by   TEXT NOT NULL,
                    status       TEXT NOT NULL,
                    created_at   DATETIME NOT NULL,
                    expires_at   DATETIME NOT NULL,
                    responded_at DATETIME
                );
                CREATE INDEX org_invitations_by_org ON org_invitations(org_id, created_at);
                CREATE INDEX org_invitations_by_email ON org_invitations(email, status);
                INSERT INTO organizations (id, name, plan, created_at)
                    SELECT 'org_' || substr(id, 5), 'Organization of ' || name, '', created_at FROM users;
                INSERT INTO org_members (org_id, user_id, role, joined_at)
                    SELECT 'org_' || substr(id, 5), id, 'admin', created_at FROM users;
                ALTER TABLE workflows ADD COLUMN org_id TEXT REFERENCES organizations(id);
                UPDATE workflows SET org_id = 'org_' || substr(user_id, 5);
                CREATE INDEX workflows_by_org ON workflows(org_id, id);
                -- Fair scheduling: each queue item names its organization.
                ALTER TABLE task_queue ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
                CREATE INDEX task_queue_tenant_order ON task_queue(queue, tenant, priority DESC, execution_id, id);
                """)
        }
        migrator.registerMigration("v8-secrets-audit-grants") { db in
            // Sealed organization secrets (AES-256-GCM; the key id names the
            // master key that sealed each value).
            // The audit log gains who-and-where columns and becomes
            // append-only: triggers refuse UPDATE and DELETE.
            // Queue grants: who may put tasks on an organization's external
            // queue and who may take them.
            try db.execute(sql: """
                CREATE TABLE secrets (
                    org_id     TEXT NOT NULL REFERENCES organizations(id),
                    name       TEXT NOT NULL,
                    version    INTEGER NOT NULL,
                    key_id     TEXT NOT NULL,
                    nonce      BLOB NOT NULL,
                    ciphertext BLOB NOT NULL,
                    created_at DATETIME NOT NULL,
                    updated_at DATETIME NOT NULL,
                    updated_by TEXT NOT NULL,
                    PRIMARY KEY (org_id, name)
                );
                ALTER TABLE audit_log ADD COLUMN org_id TEXT NOT NULL DEFAULT '';
                ALTER TABLE audit_log ADD COLUMN outcome TEXT NOT NULL DEFAULT 'OK';
                ALTER TABLE audit_log ADD COLUMN client_address TEXT NOT NULL DEFAULT '';
                ALTER TABLE audit_log ADD COLUMN trace_id TEXT NOT NULL DEFAULT '';
                CREATE INDEX audit_by_org ON audit_log(org_id, id);
                CREATE TRIGGER audit_log_append_only_update BEFORE UPDATE ON audit_log
                BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log
                BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                CREATE TABLE queue_grants (
                    org_id     TEXT NOT NULL REFERENCES organizations(id),
                    queue      TEXT NOT NULL,
                    user_id    TEXT NOT NULL REFERENCES users(id),
                    submit     INTEGER NOT NULL,
                    poll       INTEGER NOT NULL,
                    updated_at DATETIME NOT NULL,
                    PRIMARY KEY (org_id, queue, user_id)
                );
                -- External queues move from their owner's namespace to the
                -- owner's organization (the one v7 made for each user).
                UPDATE task_queue SET queue = 'ext/org_' || substr(queue, 9)
                WHERE queue LIKE 'ext/usr!_%' ESCAPE '!';
                """)
        }
        migrator.registerMigration("v9-sessions-api-keys") { db in
            // Sessions: refresh tokens (hashed; a family per login) and a
            // per-user token version that revokes every access token at once.
            // API keys: hashed secrets with a lookup prefix, scopes, expiry.
            try db.execute(sql: """
                ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;
                CREATE TABLE refresh_tokens (
                    hash       TEXT PRIMARY KEY,
                    family_id  TEXT NOT NULL,
                    user_id    TEXT NOT NULL REFERENCES users(id),
                    created_at DATETIME NOT NULL,
                    expires_at DATETIME NOT NULL,
                    used_at    DATETIME,
                    revoked_at DATETIME
                );
                CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
                CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);
                CREATE INDEX refresh_tokens_revoked ON refresh_tokens(revoked_at) WHERE revoked_at IS NOT NULL;
                CREATE TABLE api_keys (
                    id             TEXT PRIMARY KEY,
                    user_id        TEXT NOT NULL REFERENCES users(id),
                    name           TEXT NOT NULL,
                    prefix         TEXT NOT NULL UNIQUE,
                    secret_hash    TEXT NOT NULL,
                    scopes         TEXT NOT NULL,
                    workflow_ids   TEXT NOT NULL,
                    queues         TEXT NOT NULL,
                    org_id         TEXT NOT NULL,
                    client_cert_cn TEXT NOT NULL,
                    expires_at     DATETIME,
                    created_at     DATETIME NOT NULL,
                    last_used_at   DATETIME,
                    revoked_at     DATETIME
                );
                CREATE INDEX api_keys_user ON api_keys(user_id, created_at);
                CREATE INDEX refresh_tokens_expiry ON refresh_tokens(expires_at);
                CREATE UNIQUE INDEX api_keys_client_cert ON api_keys(client_cert_cn)
                    WHERE revoked_at IS NULL AND client_cert_cn != '';
                """)
        }
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
        migrator.registerMigration("v11-notifications") { db in
            // Subscriptions, integrations and the outbox of the seed's design
            // were never written before this step: rebuilt with what
            // delivering needs (events, filters, sealed secrets, delivery
            // ids, states, claims and an attempt log), plus in-app
            // notifications and organizations' templates.
            try db.execute(sql: """
                DROP INDEX IF EXISTS subscriptions_by_workflow;
                DROP TABLE subscriptions;
                CREATE TABLE subscriptions (
                    id               TEXT PRIMARY KEY NOT NULL,
                    workflow_id      TEXT NOT NULL REFERENCES workflows(id),
                    org_id           TEXT NOT NULL,
                    user_id          TEXT NOT NULL REFERENCES users(id),
                    event_type       TEXT NOT NULL,
                    events           TEXT NOT NULL,
                    notify_via       TEXT NOT NULL,
                    destination      TEXT NOT NULL,
                    integration_id   TEXT,
                    filter           TEXT,
                    deadline_seconds INTEGER,
                    created_at       DATETIME NOT NULL
                );
                CREATE INDEX subscriptions_by_workflow ON subscriptions(workflow_id, id);
                CREATE INDEX subscriptions_by_integration ON subscriptions(integration_id) WHERE integration_id IS NOT NULL;
                DROP INDEX IF EXISTS integrations_by_workflow;
                DROP TABLE integrations;
                CREATE TABLE integrations (
                    id            TEXT PRIMARY KEY NOT NULL,
                    workflow_id   TEXT NOT NULL REFERENCES workflows(id),
                    org_id        TEXT NOT NULL,
                    type          TEXT NOT NULL,
                    name          TEXT NOT NULL DEFAULT '',
                    config        TEXT NOT NULL DEFAULT '{}',
                    -- AES-256-GCM sealed JSON of the secret fields; never in clear.
                    sealed        TEXT,
                    secret_fields TEXT NOT NULL DEFAULT '',
                    display_url   TEXT NOT NULL DEFAULT '',
                    created_by    TEXT NOT NULL,
                    created_at    DATETIME NOT NULL,
                    updated_at    DATETIME NOT NULL
                );
                CREATE INDEX integrations_by_workflow ON integrations(workflow_id, id);
                DROP INDEX IF EXISTS outbox_pending;
                DROP TABLE outbox;
                CREATE TABLE outbox (
                    id              INTEGER PRIMARY KEY AUTOINCREMENT,
                    delivery_id     TEXT NOT NULL UNIQUE,
                    subscription_id TEXT NOT NULL,
                    workflow_id     TEXT NOT NULL,
                    org_id          TEXT NOT NULL,
                    execution_id    TEXT NOT NULL,
                    event           TEXT NOT NULL,
                    channel         TEXT NOT NULL,
                    payload         TEXT NOT NULL,
                    traceparent     TEXT,
                    created_at      DATETIME NOT NULL,
                    state           TEXT NOT NULL DEFAULT 'pending',
                    attempts        INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at DATETIME NOT NULL,
                    delivered_at    DATETIME,
                    last_error      TEXT,
                    -- One JSON object per attempt, appended by the update that
                    -- records it (one row write per outcome, no second table).
                    attempt_log     TEXT NOT NULL DEFAULT '[]'
                );
                CREATE INDEX outbox_pending ON outbox(next_attempt_at, id) WHERE state = 'pending';
                CREATE INDEX outbox_by_subscription ON outbox(subscription_id, id);
                CREATE TABLE notifications (
                    id           TEXT PRIMARY KEY NOT NULL,
                    user_id      TEXT NOT NULL,
                    workflow_id  TEXT NOT NULL,
                    execution_id TEXT NOT NULL,
                    event        TEXT NOT NULL,
                    title        TEXT NOT NULL,
                    body         TEXT NOT NULL,
                    link         TEXT NOT NULL,
                    delivery_id  TEXT NOT NULL UNIQUE,
                    created_at   DATETIME NOT NULL,
                    read_at      DATETIME
                );
                CREATE INDEX notifications_by_user ON notifications(user_id, id);
                CREATE TABLE notification_templates (
                    org_id     TEXT NOT NULL,
                    event      TEXT NOT NULL,
                    subject    TEXT NOT NULL,
                    text       TEXT NOT NULL,
                    html       TEXT NOT NULL,
                    updated_at DATETIME NOT NULL,
                    updated_by TEXT NOT NULL,
                    PRIMARY KEY (org_id, event)
                );
                """)
        }
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
        return migrator
    }
}
