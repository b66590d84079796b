import GRDB

extension SQLiteMigrations {
    /// Organizations, secrets, the audit log, queue grants, sessions and API keys (Steps 6 and 7).
    static func registerTenancy(_ migrator: inout DatabaseMigrator) {
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
    }
}
