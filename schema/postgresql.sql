-- tasker schema version 7 for postgresql.
-- Generated from tasker/store/schema.py by `tasker schema --write schema`; do not edit.

CREATE SCHEMA IF NOT EXISTS tasker;

CREATE TABLE IF NOT EXISTS tasker.journal_replays (
	journal_id VARCHAR(36) NOT NULL, 
	hostname VARCHAR(255), 
	process_id INTEGER, 
	events INTEGER NOT NULL, 
	replayed_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (journal_id)
);

CREATE TABLE IF NOT EXISTS tasker.run_counts (
	shard INTEGER NOT NULL, 
	n_not_started BIGINT DEFAULT '0' NOT NULL, 
	n_started BIGINT DEFAULT '0' NOT NULL, 
	n_running BIGINT DEFAULT '0' NOT NULL, 
	n_completed BIGINT DEFAULT '0' NOT NULL, 
	n_failed BIGINT DEFAULT '0' NOT NULL, 
	n_skipped BIGINT DEFAULT '0' NOT NULL, 
	n_cancelled BIGINT DEFAULT '0' NOT NULL, 
	PRIMARY KEY (shard)
);

CREATE TABLE IF NOT EXISTS tasker.stages (
	stage_id BIGSERIAL NOT NULL, 
	stage_name VARCHAR(100) NOT NULL, 
	stage_order INTEGER, 
	description TEXT, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (stage_id), 
	CONSTRAINT uq_stages_stage_name UNIQUE (stage_name)
);

CREATE INDEX ix_stages_stage_order ON tasker.stages (stage_order);

CREATE TABLE IF NOT EXISTS tasker.tasks (
	task_id BIGSERIAL NOT NULL, 
	stage_id BIGINT NOT NULL, 
	task_name VARCHAR(255) NOT NULL, 
	task_type VARCHAR(20), 
	task_order INTEGER, 
	description TEXT, 
	script_path TEXT, 
	script_filename VARCHAR(255), 
	log_path TEXT, 
	log_filename VARCHAR(255), 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	last_run_id UUID, 
	last_start_time TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (task_id), 
	CONSTRAINT uq_tasks_stage_task UNIQUE (stage_id, task_name), 
	CONSTRAINT fk_tasks_stage FOREIGN KEY(stage_id) REFERENCES tasker.stages (stage_id)
);

CREATE INDEX ix_tasks_task_order ON tasker.tasks (stage_id, task_order);

CREATE TABLE IF NOT EXISTS tasker.task_runs (
	run_id UUID NOT NULL, 
	task_id BIGINT NOT NULL, 
	parent_run_id UUID, 
	status VARCHAR(20) NOT NULL, 
	hostname VARCHAR(255) NOT NULL, 
	process_id INTEGER NOT NULL, 
	parent_pid INTEGER, 
	process_start_time DOUBLE PRECISION, 
	user_name VARCHAR(100), 
	python_version VARCHAR(50), 
	command_line TEXT, 
	script_path TEXT, 
	script_filename VARCHAR(255), 
	log_path TEXT, 
	log_filename VARCHAR(255), 
	version VARCHAR(100), 
	git_commit VARCHAR(64), 
	git_branch VARCHAR(255), 
	git_dirty BOOLEAN, 
	environment VARCHAR(100), 
	start_time TIMESTAMP WITH TIME ZONE, 
	end_time TIMESTAMP WITH TIME ZONE, 
	last_update TIMESTAMP WITH TIME ZONE NOT NULL, 
	heartbeat TIMESTAMP WITH TIME ZONE, 
	total_subtasks INTEGER, 
	current_subtask INTEGER, 
	overall_percent_complete DOUBLE PRECISION, 
	overall_progress_message TEXT, 
	exit_code INTEGER, 
	cpu_seconds DOUBLE PRECISION, 
	peak_memory_mb DOUBLE PRECISION, 
	error_type VARCHAR(255), 
	error_message TEXT, 
	error_detail TEXT, 
	boot_id VARCHAR(64), 
	pid_namespace VARCHAR(64), 
	log_tail TEXT, 
	process_start_uptime DOUBLE PRECISION, 
	PRIMARY KEY (run_id), 
	CONSTRAINT ck_task_runs_status CHECK (status IN ('NOT_STARTED', 'STARTED', 'RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED')), 
	CONSTRAINT fk_task_runs_task FOREIGN KEY(task_id) REFERENCES tasker.tasks (task_id) ON DELETE CASCADE
);

CREATE INDEX ix_task_runs_active ON tasker.task_runs (status, hostname) WHERE status IN ('STARTED', 'RUNNING');

CREATE INDEX ix_task_runs_host_start ON tasker.task_runs (hostname, start_time, run_id);

CREATE INDEX ix_task_runs_parent_start ON tasker.task_runs (parent_run_id, start_time, run_id);

CREATE INDEX ix_task_runs_start_run ON tasker.task_runs (start_time, run_id, task_id);

CREATE INDEX ix_task_runs_status_start ON tasker.task_runs (status, start_time, run_id);

CREATE INDEX ix_task_runs_task_start ON tasker.task_runs (task_id, start_time, run_id);

CREATE INDEX ix_task_runs_task_status ON tasker.task_runs (task_id, status, start_time, run_id);

CREATE TABLE IF NOT EXISTS tasker.subtask_progress (
	progress_id BIGSERIAL NOT NULL, 
	run_id UUID NOT NULL, 
	subtask_number INTEGER NOT NULL, 
	subtask_name VARCHAR(500), 
	status VARCHAR(20) NOT NULL, 
	start_time TIMESTAMP WITH TIME ZONE, 
	end_time TIMESTAMP WITH TIME ZONE, 
	last_update TIMESTAMP WITH TIME ZONE NOT NULL, 
	percent_complete DOUBLE PRECISION, 
	progress_message TEXT, 
	items_total BIGINT, 
	items_complete BIGINT DEFAULT '0' NOT NULL, 
	error_message TEXT, 
	PRIMARY KEY (progress_id), 
	CONSTRAINT ck_subtask_progress_status CHECK (status IN ('NOT_STARTED', 'STARTED', 'RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED')), 
	CONSTRAINT uq_subtask_progress_run_number UNIQUE (run_id, subtask_number), 
	CONSTRAINT fk_subtask_progress_run FOREIGN KEY(run_id) REFERENCES tasker.task_runs (run_id) ON DELETE CASCADE
);

CREATE OR REPLACE VIEW tasker.current_task_status AS
SELECT tasker.stages.stage_name, tasker.stages.stage_order, tasker.tasks.task_id, tasker.tasks.task_name, tasker.tasks.task_type, tasker.tasks.task_order, tasker.tasks.script_path, tasker.tasks.script_filename, tasker.tasks.log_path, tasker.tasks.log_filename, CASE WHEN (tasker.task_runs.status IS NULL) THEN 'NOT_STARTED' ELSE tasker.task_runs.status END AS status, tasker.task_runs.run_id, tasker.task_runs.hostname, tasker.task_runs.process_id, tasker.task_runs.user_name, tasker.task_runs.start_time, tasker.task_runs.end_time, tasker.task_runs.last_update, tasker.task_runs.total_subtasks, tasker.task_runs.current_subtask, tasker.task_runs.overall_percent_complete, tasker.task_runs.overall_progress_message, tasker.subtask_progress.subtask_name, tasker.subtask_progress.status AS subtask_status, tasker.subtask_progress.percent_complete AS subtask_percent_complete, tasker.subtask_progress.items_total, tasker.subtask_progress.items_complete, tasker.task_runs.error_message, tasker.subtask_progress.start_time AS subtask_start_time 
FROM tasker.stages JOIN tasker.tasks ON tasker.tasks.stage_id = tasker.stages.stage_id LEFT OUTER JOIN tasker.task_runs ON tasker.task_runs.run_id = tasker.tasks.last_run_id LEFT OUTER JOIN tasker.subtask_progress ON tasker.subtask_progress.run_id = tasker.task_runs.run_id AND tasker.subtask_progress.subtask_number = tasker.task_runs.current_subtask;

CREATE OR REPLACE VIEW tasker.active_tasks AS
SELECT tasker.task_runs.run_id, tasker.task_runs.task_id, tasker.stages.stage_name, tasker.stages.stage_order, tasker.tasks.task_name, tasker.tasks.task_type, tasker.tasks.task_order, tasker.task_runs.status, tasker.task_runs.hostname, tasker.task_runs.process_id, tasker.task_runs.parent_pid, tasker.task_runs.parent_run_id, tasker.task_runs.user_name, tasker.task_runs.python_version, tasker.task_runs.command_line, tasker.task_runs.script_path, tasker.task_runs.script_filename, tasker.task_runs.log_path, tasker.task_runs.log_filename, tasker.task_runs.version, tasker.task_runs.git_commit, tasker.task_runs.git_branch, tasker.task_runs.git_dirty, tasker.task_runs.environment, tasker.task_runs.start_time, tasker.task_runs.end_time, tasker.task_runs.last_update, tasker.task_runs.heartbeat, tasker.task_runs.total_subtasks, tasker.task_runs.current_subtask, tasker.task_runs.overall_percent_complete, tasker.task_runs.overall_progress_message, tasker.task_runs.exit_code, tasker.task_runs.cpu_seconds, tasker.task_runs.peak_memory_mb, tasker.task_runs.error_type, tasker.task_runs.error_message, tasker.task_runs.error_detail, tasker.task_runs.process_start_time, tasker.task_runs.boot_id, tasker.task_runs.pid_namespace, tasker.task_runs.process_start_uptime 
FROM tasker.task_runs JOIN tasker.tasks ON tasker.tasks.task_id = tasker.task_runs.task_id JOIN tasker.stages ON tasker.stages.stage_id = tasker.tasks.stage_id 
WHERE tasker.task_runs.status IN ('STARTED', 'RUNNING');

CREATE OR REPLACE FUNCTION tasker.tasker_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'task_runs' THEN
        IF NEW.last_update IS NOT DISTINCT FROM OLD.last_update
                AND NEW.heartbeat IS NOT DISTINCT FROM OLD.heartbeat THEN
            NEW.last_update := now();
        END IF;
    ELSIF TG_TABLE_NAME = 'subtask_progress' THEN
        IF NEW.last_update IS NOT DISTINCT FROM OLD.last_update THEN
            NEW.last_update := now();
        END IF;
    ELSIF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS trg_stages_touch ON tasker.stages;

CREATE TRIGGER trg_stages_touch BEFORE UPDATE ON tasker.stages FOR EACH ROW EXECUTE FUNCTION tasker.tasker_touch();

DROP TRIGGER IF EXISTS trg_tasks_touch ON tasker.tasks;

CREATE TRIGGER trg_tasks_touch BEFORE UPDATE ON tasker.tasks FOR EACH ROW EXECUTE FUNCTION tasker.tasker_touch();

DROP TRIGGER IF EXISTS trg_task_runs_touch ON tasker.task_runs;

CREATE TRIGGER trg_task_runs_touch BEFORE UPDATE ON tasker.task_runs FOR EACH ROW EXECUTE FUNCTION tasker.tasker_touch();

DROP TRIGGER IF EXISTS trg_subtask_progress_touch ON tasker.subtask_progress;

CREATE TRIGGER trg_subtask_progress_touch BEFORE UPDATE ON tasker.subtask_progress FOR EACH ROW EXECUTE FUNCTION tasker.tasker_touch();

INSERT INTO tasker.run_counts (shard) VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9), (10), (11), (12), (13), (14), (15), (16), (17), (18), (19), (20), (21), (22), (23), (24), (25), (26), (27), (28), (29), (30), (31), (32), (33), (34), (35), (36), (37), (38), (39), (40), (41), (42), (43), (44), (45), (46), (47), (48), (49), (50), (51), (52), (53), (54), (55), (56), (57), (58), (59), (60), (61), (62), (63) ON CONFLICT (shard) DO NOTHING;

CREATE OR REPLACE FUNCTION tasker.tasker_count_runs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT ARRAY[count(*) FILTER (WHERE n.status = 'NOT_STARTED'), count(*) FILTER (WHERE n.status = 'STARTED'), count(*) FILTER (WHERE n.status = 'RUNNING'), count(*) FILTER (WHERE n.status = 'COMPLETED'), count(*) FILTER (WHERE n.status = 'FAILED'), count(*) FILTER (WHERE n.status = 'SKIPPED'), count(*) FILTER (WHERE n.status = 'CANCELLED')] INTO d FROM tasker_new AS n;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT ARRAY[count(*) FILTER (WHERE o.status = 'NOT_STARTED'), count(*) FILTER (WHERE o.status = 'STARTED'), count(*) FILTER (WHERE o.status = 'RUNNING'), count(*) FILTER (WHERE o.status = 'COMPLETED'), count(*) FILTER (WHERE o.status = 'FAILED'), count(*) FILTER (WHERE o.status = 'SKIPPED'), count(*) FILTER (WHERE o.status = 'CANCELLED')] INTO d FROM tasker_old AS o;
        d := ARRAY(SELECT -x FROM unnest(d) AS x);
    ELSE
        SELECT ARRAY[count(*) FILTER (WHERE n.status = 'NOT_STARTED') - count(*) FILTER (WHERE o.status = 'NOT_STARTED'), count(*) FILTER (WHERE n.status = 'STARTED') - count(*) FILTER (WHERE o.status = 'STARTED'), count(*) FILTER (WHERE n.status = 'RUNNING') - count(*) FILTER (WHERE o.status = 'RUNNING'), count(*) FILTER (WHERE n.status = 'COMPLETED') - count(*) FILTER (WHERE o.status = 'COMPLETED'), count(*) FILTER (WHERE n.status = 'FAILED') - count(*) FILTER (WHERE o.status = 'FAILED'), count(*) FILTER (WHERE n.status = 'SKIPPED') - count(*) FILTER (WHERE o.status = 'SKIPPED'), count(*) FILTER (WHERE n.status = 'CANCELLED') - count(*) FILTER (WHERE o.status = 'CANCELLED')] INTO d
        FROM tasker_old AS o JOIN tasker_new AS n ON n.run_id = o.run_id
        WHERE n.status IS DISTINCT FROM o.status;
    END IF;
    IF d <> ARRAY[0, 0, 0, 0, 0, 0, 0]::bigint[] THEN
        UPDATE tasker.run_counts SET n_not_started = n_not_started + d[1], n_started = n_started + d[2], n_running = n_running + d[3], n_completed = n_completed + d[4], n_failed = n_failed + d[5], n_skipped = n_skipped + d[6], n_cancelled = n_cancelled + d[7]
        WHERE shard = pg_backend_pid() % 64;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS trg_task_runs_count_insert ON tasker.task_runs;

CREATE TRIGGER trg_task_runs_count_insert AFTER INSERT ON tasker.task_runs REFERENCING NEW TABLE AS tasker_new FOR EACH STATEMENT EXECUTE FUNCTION tasker.tasker_count_runs();

DROP TRIGGER IF EXISTS trg_task_runs_count_update ON tasker.task_runs;

CREATE TRIGGER trg_task_runs_count_update AFTER UPDATE ON tasker.task_runs REFERENCING OLD TABLE AS tasker_old NEW TABLE AS tasker_new FOR EACH STATEMENT EXECUTE FUNCTION tasker.tasker_count_runs();

DROP TRIGGER IF EXISTS trg_task_runs_count_delete ON tasker.task_runs;

CREATE TRIGGER trg_task_runs_count_delete AFTER DELETE ON tasker.task_runs REFERENCING OLD TABLE AS tasker_old FOR EACH STATEMENT EXECUTE FUNCTION tasker.tasker_count_runs();

CREATE TABLE IF NOT EXISTS tasker.schema_info (
	key VARCHAR(64) NOT NULL, 
	value VARCHAR(255) NOT NULL, 
	PRIMARY KEY (key)
);

INSERT INTO tasker.schema_info (key, value) VALUES ('schema_version', '7');
