-- step: a pipeline step and its version (class Step).
CREATE TABLE IF NOT EXISTS step (
    step_id character varying NOT NULL,
    name character varying NOT NULL,
    version character varying NOT NULL,
    comments character varying NOT NULL,
    date timestamp without time zone NOT NULL,
    CONSTRAINT step_pkey PRIMARY KEY (step_id)
);
