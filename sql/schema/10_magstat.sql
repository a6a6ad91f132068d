-- magstat: magnitude statistics of an object in one band (class MagStats).
-- The index names say "magstats", the table "magstat": both as in db-plugins.
CREATE TABLE IF NOT EXISTS magstat (
    oid character varying NOT NULL,
    fid integer NOT NULL,
    stellar boolean NOT NULL,
    corrected boolean NOT NULL,
    ndet integer NOT NULL,
    ndubious integer NOT NULL,
    dmdt_first double precision,
    dm_first double precision,
    sigmadm_first double precision,
    dt_first double precision,
    magmean double precision,
    magmedian double precision,
    magmax double precision,
    magmin double precision,
    magsigma double precision,
    maglast double precision,
    magfirst double precision,
    magmean_corr double precision,
    magmedian_corr double precision,
    magmax_corr double precision,
    magmin_corr double precision,
    magsigma_corr double precision,
    maglast_corr double precision,
    magfirst_corr double precision,
    firstmjd double precision,
    lastmjd double precision,
    step_id_corr character varying NOT NULL,
    saturation_rate double precision,
    CONSTRAINT magstat_pkey PRIMARY KEY (oid, fid),
    CONSTRAINT magstat_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX IF NOT EXISTS ix_magstats_dmdt_first ON magstat USING btree (dmdt_first);
CREATE INDEX IF NOT EXISTS ix_magstats_firstmjd ON magstat USING btree (firstmjd);
CREATE INDEX IF NOT EXISTS ix_magstats_lastmjd ON magstat USING btree (lastmjd);
CREATE INDEX IF NOT EXISTS ix_magstats_magmean ON magstat USING btree (magmean);
CREATE INDEX IF NOT EXISTS ix_magstats_magmin ON magstat USING btree (magmin);
CREATE INDEX IF NOT EXISTS ix_magstats_magfirst ON magstat USING btree (magfirst);
CREATE INDEX IF NOT EXISTS ix_magstats_ndet ON magstat USING btree (ndet);
CREATE INDEX IF NOT EXISTS ix_magstats_maglast ON magstat USING btree (maglast);
CREATE INDEX IF NOT EXISTS ix_magstats_oid ON magstat USING hash (oid);
