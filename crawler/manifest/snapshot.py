"""The SQLite schema at ``SCHEMA_HEAD``, exactly as Alembic's migrations leave it.

A new SQLite manifest is created from these statements in one step instead of by replaying
every migration, which would import Alembic, Mako and Pygments and cost a tenth of a second of
CPU per new mirror. Alembic stays the one owner of the schema: tests/test_manifest.py migrates a
manifest with Alembic and requires its ``sqlite_master`` to equal this; after adding a migration,
regenerate this file from such a manifest (the failing test prints the statements).
"""

REVISION = "0006"

SQLITE: tuple[str, ...] = (
    (
        "CREATE TABLE alembic_version (\n"
        "\tversion_num VARCHAR(32) NOT NULL, \n"
        "\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n"
        ")"
    ),
    (
        "CREATE TABLE items (\n"
        "\tid INTEGER NOT NULL, \n"
        "\tref TEXT NOT NULL, \n"
        "\turl TEXT NOT NULL, \n"
        "\tpath TEXT NOT NULL, \n"
        "\tkind VARCHAR(32) NOT NULL, \n"
        "\tdata_set_id BIGINT NOT NULL, \n"
        "\timage_id BIGINT, \n"
        "\tstatus VARCHAR(16) DEFAULT 'pending' NOT NULL, \n"
        "\tattempts INTEGER DEFAULT '0' NOT NULL, \n"
        "\thttp_status INTEGER, \n"
        "\terror TEXT, \n"
        "\tsize BIGINT, \n"
        "\tsha256 VARCHAR(64), \n"
        "\tclaimed_by VARCHAR(128), \n"
        "\tlease_until DATETIME, \n"
        "\tcreated_at DATETIME NOT NULL, \n"
        "\tupdated_at DATETIME NOT NULL, \n"
        "\tfetched_at DATETIME, previous_sha256 VARCHAR(64), problem VARCHAR(16), "
        "plan_run BIGINT, \n"
        "\tPRIMARY KEY (id), \n"
        "\tCONSTRAINT uq_items_ref UNIQUE (ref)\n"
        ")"
    ),
    "CREATE INDEX ix_items_status_id ON items (status, id)",
    (
        "CREATE TABLE runs (\n"
        "\tid INTEGER NOT NULL, \n"
        "\tcommand VARCHAR(32) NOT NULL, \n"
        "\tselection TEXT NOT NULL, \n"
        "\tsettings TEXT NOT NULL, \n"
        "\thost VARCHAR(255) NOT NULL, \n"
        "\tpid INTEGER NOT NULL, \n"
        "\tstarted_at DATETIME NOT NULL, \n"
        "\tfinished_at DATETIME, \n"
        "\toutcome VARCHAR(16) DEFAULT 'running' NOT NULL, \n"
        "\texit_code INTEGER, \n"
        "\tcounts TEXT, \n"
        "\tbytes BIGINT, \n"
        "\treport_path TEXT, \n"
        "\tPRIMARY KEY (id)\n"
        ")"
    ),
    (
        "CREATE TABLE workers (\n"
        "\tid VARCHAR(128) NOT NULL, \n"
        "\tcommand VARCHAR(32) NOT NULL, \n"
        "\thost VARCHAR(255) NOT NULL, \n"
        "\tpid INTEGER NOT NULL, \n"
        "\tstarted_at DATETIME NOT NULL, \n"
        "\tlast_seen DATETIME NOT NULL, \n"
        "\tstopped_at DATETIME, \n"
        "\trequests BIGINT DEFAULT '0' NOT NULL, \n"
        "\tdone BIGINT DEFAULT '0' NOT NULL, \n"
        "\tfailed BIGINT DEFAULT '0' NOT NULL, \n"
        "\tbytes BIGINT DEFAULT '0' NOT NULL, \n"
        "\trate FLOAT DEFAULT '0' NOT NULL, \n"
        "\tPRIMARY KEY (id)\n"
        ")"
    ),
    "CREATE INDEX ix_workers_last_seen ON workers (last_seen)",
    (
        "CREATE TABLE rate_limits (\n"
        "\tname VARCHAR(255) NOT NULL, \n"
        "\tnext_free FLOAT NOT NULL, \n"
        "\tPRIMARY KEY (name)\n"
        ")"
    ),
    "CREATE INDEX ix_items_claimed_by ON items (claimed_by) WHERE claimed_by IS NOT NULL",
    "CREATE INDEX ix_items_tally ON items (data_set_id, status, size)",
    "CREATE INDEX ix_items_path ON items (path)",
)
