-- allwise: AllWISE sources with their 2MASS magnitudes (class Allwise). No foreign keys.
CREATE TABLE IF NOT EXISTS allwise (
    oid_catalog character varying NOT NULL,
    ra double precision NOT NULL,
    dec double precision NOT NULL,
    w1mpro double precision,
    w2mpro double precision,
    w3mpro double precision,
    w4mpro double precision,
    w1sigmpro double precision,
    w2sigmpro double precision,
    w3sigmpro double precision,
    w4sigmpro double precision,
    j_m_2mass double precision,
    h_m_2mass double precision,
    k_m_2mass double precision,
    j_msig_2mass double precision,
    h_msig_2mass double precision,
    k_msig_2mass double precision,
    CONSTRAINT allwise_pkey PRIMARY KEY (oid_catalog)
);

CREATE INDEX IF NOT EXISTS ix_allwise_dec ON allwise USING btree (dec);
CREATE INDEX IF NOT EXISTS ix_allwise_ra ON allwise USING btree (ra);
