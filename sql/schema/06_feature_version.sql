-- feature_version: a version of the feature set and the steps that computed it (class FeatureVersion).
CREATE TABLE IF NOT EXISTS feature_version (
    version character varying NOT NULL,
    step_id_feature character varying,
    step_id_preprocess character varying,
    CONSTRAINT feature_version_pkey PRIMARY KEY (version),
    CONSTRAINT feature_version_step_id_feature_fkey FOREIGN KEY (step_id_feature) REFERENCES step (step_id),
    CONSTRAINT feature_version_step_id_preprocess_fkey FOREIGN KEY (step_id_preprocess) REFERENCES step (step_id)
);
