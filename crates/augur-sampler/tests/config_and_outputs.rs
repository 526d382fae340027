//! Sampler config parsing from TOML (deny_unknown_fields).

use augur_sampler::{AcquisitionConfig, Method, PredictorConfig, SamplerConfig};

#[test]
fn sampler_config_from_toml() {
    let c: SamplerConfig = toml::from_str(
        r#"
        method = "mopps"
        seed = 7
        [mopps]
        lambda = 0.5
        [acquisition]
        kind = "risk"
        kappa = 2.0
        "#,
    )
    .unwrap();
    assert_eq!(c.method, Method::Mopps);
    assert_eq!(c.acquisition, Some(AcquisitionConfig::Risk { kappa: 2.0 }));
    match c.predictor_config() {
        PredictorConfig::Beta(b) => assert_eq!(b.lambda, 0.5),
        p => panic!("unexpected {p:?}"),
    }
    assert_eq!(c.build().unwrap().name(), "beta+risk");
    assert!(toml::from_str::<SamplerConfig>("methd = \"dps\"").is_err());
    assert!(toml::from_str::<SamplerConfig>("[acquisition]\nkind = \"risk\"\nkapa = 1.0").is_err());
    assert!(
        toml::from_str::<SamplerConfig>("[predictor]\nkind = \"beta\"\nlambda = 2.0")
            .unwrap()
            .build()
            .is_err()
    );
    assert!(SamplerConfig::for_method(Method::Ds).build().is_err());
    assert!("bogus".parse::<Method>().is_err());
}
