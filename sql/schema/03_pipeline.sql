-- pipeline: the steps that produced a set of results (class Pipeline). No foreign keys.
CREATE TABLE IF NOT EXISTS pipeline (
    pipeline_id character varying NOT NULL,
    step_id_corr character varying,
    step_id_feat character varying,
    step_id_clf character varying,
    step_id_out character varying,
    step_id_stamp character varying,
    date timestamp without time zone NOT NULL,
    CONSTRAINT pipeline_pkey PRIMARY KEY (pipeline_id)
);
