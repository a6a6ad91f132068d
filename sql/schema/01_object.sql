-- object: one row per astronomical object (ZTF oid) with its aggregated statistics.
-- Class Object. Every column but the key is nullable (db-plugins 4.2.7).
CREATE TABLE IF NOT EXISTS object (
    oid character varying NOT NULL,
    ndethist integer,
    ncovhist integer,
    mjdstarthist double precision,
    mjdendhist double precision,
    corrected boolean,
    stellar boolean,
    ndet integer,
    g_r_max double precision,
    g_r_max_corr double precision,
    g_r_mean double precision,
    g_r_mean_corr double precision,
    meanra double precision,
    meandec double precision,
    sigmara double precision,
    sigmadec double precision,
    deltajd double precision,
    firstmjd double precision,
    lastmjd double precision,
    step_id_corr character varying,
    diffpos boolean,
    reference_change boolean,
    CONSTRAINT object_pkey PRIMARY KEY (oid)
);

CREATE INDEX IF NOT EXISTS ix_object_ndet ON object USING btree (ndet);
CREATE INDEX IF NOT EXISTS ix_object_firstmjd ON object USING btree (firstmjd);
CREATE INDEX IF NOT EXISTS ix_object_g_r_max ON object USING btree (g_r_max);
CREATE INDEX IF NOT EXISTS ix_object_g_r_mean_corr ON object USING btree (g_r_mean_corr);
CREATE INDEX IF NOT EXISTS ix_object_meanra ON object USING btree (meanra);
CREATE INDEX IF NOT EXISTS ix_object_meandec ON object USING btree (meandec);
