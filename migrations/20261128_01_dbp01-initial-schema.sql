-- The initial built-in schema: the 17 tables of db-plugins 4.2.7, as sql/schema/*.sql creates them.
-- dbp initdb runs sql/schema directly and records this migration as applied; dbp migrate on an empty
-- database runs it instead, with the same result (a test checks both agree).
-- Never edit a released migration: a schema change goes into a new one
-- (dbp make_migrations --migrations-dir migrations, from a checkout).
-- depends:

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

-- step: a pipeline step and its version (class Step).
CREATE TABLE IF NOT EXISTS step (
    step_id character varying NOT NULL,
    name character varying NOT NULL,
    version character varying NOT NULL,
    comments character varying NOT NULL,
    date timestamp without time zone NOT NULL,
    CONSTRAINT step_pkey PRIMARY KEY (step_id)
);

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

-- taxonomy: the classes a classifier version can assign (class Taxonomy).
CREATE TABLE IF NOT EXISTS taxonomy (
    classifier_name character varying NOT NULL,
    classifier_version character varying NOT NULL,
    classes character varying[] NOT NULL,
    CONSTRAINT taxonomy_pkey PRIMARY KEY (classifier_name, classifier_version)
);

-- probability: the probability that an object belongs to a class, by classifier (class Probability).
-- ix_classification_rank1 is a partial index over the top-ranked class only.
CREATE TABLE IF NOT EXISTS probability (
    oid character varying NOT NULL,
    class_name character varying NOT NULL,
    classifier_name character varying NOT NULL,
    classifier_version character varying NOT NULL,
    probability double precision NOT NULL,
    ranking integer NOT NULL,
    CONSTRAINT probability_pkey PRIMARY KEY (oid, class_name, classifier_name, classifier_version),
    CONSTRAINT probability_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX IF NOT EXISTS ix_probabilities_oid ON probability USING hash (oid);
CREATE INDEX IF NOT EXISTS ix_probabilities_probability ON probability USING btree (probability);
CREATE INDEX IF NOT EXISTS ix_probabilities_ranking ON probability USING btree (ranking);
CREATE INDEX IF NOT EXISTS ix_classification_rank1 ON probability USING btree (ranking) WHERE ranking = 1;

-- feature_version: a version of the feature set and the steps that computed it (class FeatureVersion).
CREATE TABLE IF NOT EXISTS feature_version (
    version character varying NOT NULL,
    step_id_feature character varying,
    step_id_preprocess character varying,
    CONSTRAINT feature_version_pkey PRIMARY KEY (version),
    CONSTRAINT feature_version_step_id_feature_fkey FOREIGN KEY (step_id_feature) REFERENCES step (step_id),
    CONSTRAINT feature_version_step_id_preprocess_fkey FOREIGN KEY (step_id_preprocess) REFERENCES step (step_id)
);

-- feature: one feature value of an object in one band (class Feature).
-- The FK on version is feature_version_fkey, PostgreSQL's default name for feature(version).
CREATE TABLE IF NOT EXISTS feature (
    oid character varying NOT NULL,
    name character varying NOT NULL,
    value double precision,
    fid integer NOT NULL,
    version character varying NOT NULL,
    CONSTRAINT feature_pkey PRIMARY KEY (oid, name, fid, version),
    CONSTRAINT feature_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid),
    CONSTRAINT feature_version_fkey FOREIGN KEY (version) REFERENCES feature_version (version)
);

CREATE INDEX IF NOT EXISTS ix_feature_oid_2 ON feature USING hash (oid);

-- xmatch: a cross-match of an object with an external catalog (class Xmatch).
CREATE TABLE IF NOT EXISTS xmatch (
    oid character varying NOT NULL,
    catid character varying NOT NULL,
    oid_catalog character varying NOT NULL,
    dist double precision NOT NULL,
    class_catalog character varying,
    period double precision,
    CONSTRAINT xmatch_pkey PRIMARY KEY (oid, catid),
    CONSTRAINT xmatch_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

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

-- non_detection: an upper limit, the object observed but not detected (class NonDetection).
CREATE TABLE IF NOT EXISTS non_detection (
    oid character varying NOT NULL,
    fid integer NOT NULL,
    mjd double precision NOT NULL,
    diffmaglim double precision,
    CONSTRAINT non_detection_pkey PRIMARY KEY (oid, fid, mjd),
    CONSTRAINT non_detection_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX IF NOT EXISTS ix_non_detection_oid ON non_detection USING hash (oid);

-- detection: one alert candidate of an object (class Detection).
-- pid is double precision, as the original created it (not bigint).
-- The index is spelled ix_ndetection_oid, the library's own name.
CREATE TABLE IF NOT EXISTS detection (
    candid bigint NOT NULL,
    oid character varying NOT NULL,
    mjd double precision NOT NULL,
    fid integer NOT NULL,
    pid double precision NOT NULL,
    diffmaglim double precision,
    isdiffpos integer NOT NULL,
    nid integer,
    ra double precision NOT NULL,
    dec double precision NOT NULL,
    magpsf double precision NOT NULL,
    sigmapsf double precision NOT NULL,
    magap double precision,
    sigmagap double precision,
    distnr double precision,
    rb double precision,
    rbversion character varying,
    drb double precision,
    drbversion character varying,
    magapbig double precision,
    sigmagapbig double precision,
    rfid integer,
    magpsf_corr double precision,
    sigmapsf_corr double precision,
    sigmapsf_corr_ext double precision,
    corrected boolean NOT NULL,
    dubious boolean NOT NULL,
    parent_candid bigint,
    has_stamp boolean NOT NULL,
    step_id_corr character varying NOT NULL,
    CONSTRAINT detection_pkey PRIMARY KEY (candid, oid),
    CONSTRAINT detection_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX IF NOT EXISTS ix_ndetection_oid ON detection USING hash (oid);

-- dataquality: image-quality measurements of a detection (class Dataquality).
-- A composite FK to detection(candid, oid), no FK to object and no index.
CREATE TABLE IF NOT EXISTS dataquality (
    candid bigint NOT NULL,
    oid character varying NOT NULL,
    fid integer NOT NULL,
    xpos double precision,
    ypos double precision,
    chipsf double precision,
    sky double precision,
    fwhm double precision,
    classtar double precision,
    mindtoedge double precision,
    seeratio double precision,
    aimage double precision,
    bimage double precision,
    aimagerat double precision,
    bimagerat double precision,
    nneg integer,
    nbad integer,
    sumrat double precision,
    scorr double precision,
    dsnrms double precision,
    ssnrms double precision,
    magzpsci double precision,
    magzpsciunc double precision,
    magzpscirms double precision,
    nmatches integer,
    clrcoeff double precision,
    clrcounc double precision,
    zpclrcov double precision,
    zpmed double precision,
    clrmed double precision,
    clrrms double precision,
    exptime double precision,
    CONSTRAINT dataquality_pkey PRIMARY KEY (candid, oid),
    CONSTRAINT dataquality_candid_oid_fkey FOREIGN KEY (candid, oid) REFERENCES detection (candid, oid)
);

-- gaia_ztf: the nearest Gaia sources of an object, from its ZTF alert (class Gaia_ztf).
CREATE TABLE IF NOT EXISTS gaia_ztf (
    oid character varying NOT NULL,
    candid bigint NOT NULL,
    neargaia double precision,
    neargaiabright double precision,
    maggaia double precision,
    maggaiabright double precision,
    unique1 boolean NOT NULL,
    CONSTRAINT gaia_ztf_pkey PRIMARY KEY (oid),
    CONSTRAINT gaia_ztf_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

-- ss_ztf: the nearest known solar-system object, from the ZTF alert (class Ss_ztf).
CREATE TABLE IF NOT EXISTS ss_ztf (
    oid character varying NOT NULL,
    candid bigint NOT NULL,
    ssdistnr double precision,
    ssmagnr double precision,
    ssnamenr character varying,
    CONSTRAINT ss_ztf_pkey PRIMARY KEY (oid),
    CONSTRAINT ss_ztf_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX IF NOT EXISTS ix_ss_ztf_candid ON ss_ztf USING btree (candid);
CREATE INDEX IF NOT EXISTS ix_ss_ztf_ssnamenr ON ss_ztf USING btree (ssnamenr);

-- ps1_ztf: the three nearest Pan-STARRS1 sources of an object, from a ZTF alert (class Ps1_ztf).
-- objectidps1..3 are double precision, as the original created them.
CREATE TABLE IF NOT EXISTS ps1_ztf (
    oid character varying NOT NULL,
    candid bigint NOT NULL,
    objectidps1 double precision,
    sgmag1 double precision,
    srmag1 double precision,
    simag1 double precision,
    szmag1 double precision,
    sgscore1 double precision,
    distpsnr1 double precision,
    objectidps2 double precision,
    sgmag2 double precision,
    srmag2 double precision,
    simag2 double precision,
    szmag2 double precision,
    sgscore2 double precision,
    distpsnr2 double precision,
    objectidps3 double precision,
    sgmag3 double precision,
    srmag3 double precision,
    simag3 double precision,
    szmag3 double precision,
    sgscore3 double precision,
    distpsnr3 double precision,
    nmtchps integer NOT NULL,
    unique1 boolean NOT NULL,
    unique2 boolean NOT NULL,
    unique3 boolean NOT NULL,
    CONSTRAINT ps1_ztf_pkey PRIMARY KEY (oid, candid),
    CONSTRAINT ps1_ztf_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

-- reference: the reference image of an object in one band (class Reference).
CREATE TABLE IF NOT EXISTS reference (
    oid character varying NOT NULL,
    rfid bigint NOT NULL,
    candid bigint NOT NULL,
    fid integer NOT NULL,
    rcid integer,
    field integer,
    magnr double precision,
    sigmagnr double precision,
    chinr double precision,
    sharpnr double precision,
    ranr double precision NOT NULL,
    decnr double precision NOT NULL,
    mjdstartref double precision NOT NULL,
    mjdendref double precision NOT NULL,
    nframesref integer NOT NULL,
    CONSTRAINT reference_pkey PRIMARY KEY (oid, rfid),
    CONSTRAINT reference_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX IF NOT EXISTS ix_reference_fid ON reference USING btree (fid);
