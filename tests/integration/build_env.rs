//! The environment as a build input: variables a node declares (`reads_env`) are part of
//! its key; pflow's own credentials never reach a child that did not declare them; strict
//! mode gives children only a base set and what their node declares.

use crate::common::{counted, BuildCmd, BuildResult, Workspace};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `env -0` output (a node's stdout) as `NAME → value`.
fn parse_env(stdout: &Value) -> BTreeMap<String, String> {
    stdout
        .as_str()
        .unwrap_or_default()
        .split('\0')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The environment the node behind workflow output `name` saw.
fn env_of(r: &BuildResult, name: &str) -> BTreeMap<String, String> {
    let env = parse_env(r.output(name));
    assert!(env.contains_key("PATH"), "no PATH for {name}: {r}");
    env
}

fn greet_shout_other() -> Value {
    json!({
        "nodes": [
            {"id": "greet", "type": "shell", "reads_env": ["GREETING"],
             "params": {"command": counted("greet", "echo \"$${GREETING-unset}\"")}},
            {"id": "shout", "type": "shell",
             "params": {"command": counted("shout", "tr a-z A-Z"), "stdin": "${greet.stdout}"}},
            {"id": "other", "type": "shell", "params": {"command": counted("other", "echo other")}}
        ],
        "outputs": {"result": {"source": "${shout.stdout}"}}
    })
}

#[test]
fn a_declared_variable_reruns_its_node_and_only_what_depends_on_it() {
    let ws = Workspace::new().workflow(greet_shout_other());
    let with = |v: &str| ws.cmd().env("GREETING", v).arg("--explain");
    let r = with("hello").run();
    r.assert_ok();
    assert_eq!(r.output("result"), "HELLO");
    assert_eq!(r.with_status("ran"), ["greet", "shout", "other"]);

    let r = with("hello").run();
    r.assert_ok();
    assert_eq!(r.with_status("cached"), ["greet", "shout", "other"]);

    // --dry-run sees the change too, and says which variable it was.
    let plan = ws.cmd().env("GREETING", "bye").arg("--dry-run").run();
    plan.assert_code(0);
    let greet = &plan.doc()["nodes"][0];
    assert_eq!(greet["action"], "run", "{plan}");
    assert_eq!(
        greet["reason"], "environment variable GREETING changed",
        "{plan}"
    );

    let r = with("bye").run();
    r.assert_ok();
    assert_eq!(r.output("result"), "BYE");
    assert_eq!(
        r.reason_of("greet"),
        "environment variable GREETING changed"
    );
    assert_eq!(r.with_status("ran"), ["greet", "shout"]);
    assert_eq!(r.status_of("other"), "cached");
    assert_eq!(
        (ws.count("greet"), ws.count("shout"), ws.count("other")),
        (2, 2, 1)
    );

    // Unset differs from set, even to the empty string.
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("result"), "UNSET");
    let r = with("").run();
    r.assert_ok();
    assert_eq!(r.status_of("greet"), "ran");
    assert_eq!(r.output("result"), "");
    assert_eq!(ws.count("greet"), 4);
}

#[test]
fn an_undeclared_variable_is_not_part_of_the_key() {
    // As documented: a variable a node does not declare is invisible to the cache.
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "show", "type": "shell",
                   "params": {"command": counted("show", "echo \"$UNDECLARED\"")}}],
        "outputs": {"shown": {"source": "${show.stdout}"}}
    }));
    let r = ws.cmd().env("UNDECLARED", "one").run();
    r.assert_ok();
    assert_eq!(r.output("shown"), "one");
    let r = ws.cmd().env("UNDECLARED", "two").run();
    r.assert_ok();
    assert_eq!(r.status_of("show"), "cached");
    assert_eq!(ws.count("show"), 1);
}

/// A workflow whose steps write their environments to files (not to outputs, which a
/// build shows with secrets redacted): three kinds of shell step that declare nothing
/// (plain, with `env` bindings, a batch item) and one that declares `ANTHROPIC_API_KEY`
/// and `PFLOW_REMOTE_CACHE_TOKEN`.
fn environment_probes() -> Value {
    json!({
        "nodes": [
            {"id": "plain", "type": "shell", "params": {"command": "env -0 > plain.env"}},
            {"id": "bound", "type": "shell",
             "params": {"command": "env -0 > bound.env", "env": {"BOUND": "b"}}},
            {"id": "items", "type": "shell", "batch": {"items": ["item0", "item1"]},
             "params": {"command": "env -0 > \"$ITEM\".env", "env": {"ITEM": "${item}"}}},
            {"id": "declares", "type": "shell",
             "reads_env": ["ANTHROPIC_API_KEY", "PFLOW_REMOTE_CACHE_TOKEN"],
             "params": {"command": "env -0 > declares.env"}}
        ]
    })
}

/// The environment a probe of [`environment_probes`] wrote to `NAME.env`.
fn env_in(ws: &Workspace, name: &str) -> BTreeMap<String, String> {
    let env = parse_env(&Value::String(ws.read(&format!("{name}.env"))));
    assert!(env.contains_key("PATH"), "no PATH for {name}");
    env
}

/// pflow's credentials, set in pflow's own environment.
const CREDENTIALS: [(&str, &str); 4] = [
    ("ANTHROPIC_API_KEY", "sk-ant-test-not-for-children"),
    ("ANTHROPIC_AUTH_TOKEN", "ant-bearer-not-for-children"),
    ("OPENAI_API_KEY", "sk-openai-not-for-children"),
    ("PFLOW_REMOTE_CACHE_TOKEN", "remote-token-not-for-children"),
];

fn with_credentials(mut cmd: BuildCmd<'_>) -> BuildCmd<'_> {
    for (k, v) in CREDENTIALS {
        cmd = cmd.env(k, v);
    }
    cmd
}

#[test]
fn pflows_credentials_reach_only_the_steps_that_declare_them() {
    for strict in [false, true] {
        let ws = Workspace::new().workflow(environment_probes());
        let mut cmd = with_credentials(ws.cmd());
        if strict {
            cmd = cmd.arg("--strict-env");
        }
        let r = cmd.run();
        r.assert_ok();
        for out in ["plain", "bound", "item0", "item1"] {
            let env = env_in(&ws, out);
            for (name, value) in CREDENTIALS {
                assert!(
                    !env.contains_key(name),
                    "{name} reached {out} (strict: {strict}): {env:#?}"
                );
                let leaked = env.values().any(|v| v.contains(value));
                assert!(!leaked, "{name}'s value reached {out}: {env:#?}");
            }
            // pflow's other settings stay with pflow too.
            assert!(!env.contains_key("PFLOW_HOME"), "{out}: {env:#?}");
        }
        assert_eq!(
            env_in(&ws, "bound").get("BOUND").map(String::as_str),
            Some("b")
        );
        let declares = env_in(&ws, "declares");
        for name in ["ANTHROPIC_API_KEY", "PFLOW_REMOTE_CACHE_TOKEN"] {
            let expected = CREDENTIALS
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v);
            assert_eq!(
                declares.get(name).map(String::as_str),
                expected,
                "{name} (strict: {strict}): {declares:#?}"
            );
        }
        for name in ["OPENAI_API_KEY", "ANTHROPIC_AUTH_TOKEN"] {
            assert!(!declares.contains_key(name), "{name}: {declares:#?}");
        }
    }
}

fn strict_probe() -> Value {
    json!({
        "nodes": [{"id": "probe", "type": "shell", "reads_env": ["DECLARED"],
                   "params": {"command": counted("probe", "env -0"), "env": {"BOUND": "b"}}}],
        "outputs": {"env": {"source": "${probe.stdout}"}}
    })
}

#[test]
fn strict_mode_passes_only_the_base_set_declared_variables_and_bindings() {
    // The three ways to ask for it: the flag, the variable, the workflow.
    type Way = fn(&Workspace) -> BuildCmd<'_>;
    let ways: [(&str, Way); 3] = [
        ("--strict-env", |ws| ws.cmd().arg("--strict-env")),
        ("PFLOW_STRICT_ENV=1", |ws| {
            ws.cmd().env("PFLOW_STRICT_ENV", "1")
        }),
        ("\"strict_env\": true", |ws| {
            ws.edit_workflow(|d| d["strict_env"] = json!(true));
            ws.cmd()
        }),
    ];
    for (way, start) in ways {
        let ws = Workspace::new().workflow(strict_probe());
        fn vars(cmd: BuildCmd<'_>) -> BuildCmd<'_> {
            cmd.env("DECLARED", "d")
                .env("UNDECLARED", "u")
                .env("TERM", "dumb")
        }
        // Loose first: the undeclared variable is there.
        let loose = vars(ws.cmd()).run();
        loose.assert_ok();
        assert_eq!(
            env_of(&loose, "env").get("UNDECLARED").map(String::as_str),
            Some("u")
        );

        let r = vars(start(&ws)).arg("--explain").run();
        r.assert_ok();
        // A different environment is a different result: strict mode is in the key.
        assert_eq!(r.status_of("probe"), "ran", "{way}: {r}");
        assert_eq!(ws.count("probe"), 2, "{way}");
        let env = env_of(&r, "env");
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("UNDECLARED"), None, "{way}: {env:#?}");
        assert_eq!(get("DECLARED"), Some("d"), "{way}: {env:#?}");
        assert_eq!(get("BOUND"), Some("b"), "{way}: {env:#?}");
        assert_eq!(get("TERM"), Some("dumb"), "{way}: {env:#?}");
        assert_eq!(get("HOME"), ws.home_dir().to_str(), "{way}: {env:#?}");
        let allowed = [
            "PATH", "HOME", "LANG", "TZ", "TMPDIR", "TERM", "USER", "DECLARED", "BOUND",
        ];
        // `sh` adds a few of its own.
        let sh_own = ["PWD", "OLDPWD", "SHLVL", "_"];
        let extra: Vec<&String> = env
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()) && !sh_own.contains(&k.as_str()))
            .collect();
        assert!(extra.is_empty(), "{way}: not in the strict set: {extra:?}");
    }
}

#[test]
fn a_secret_variable_is_keyed_but_its_value_is_never_recorded() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "db", "type": "shell", "reads_env": ["DB_PASSWORD"],
                   "params": {"command": counted("db", "test -n \"$DB_PASSWORD\" && echo set")}}]
    }));
    let with = |v: &str| ws.cmd().env("DB_PASSWORD", v).arg("--explain").run();
    with("hunter2-first").assert_ok();
    assert_eq!(with("hunter2-first").status_of("db"), "cached");
    let r = with("hunter2-second");
    r.assert_ok();
    assert_eq!(r.status_of("db"), "ran");
    assert_eq!(
        r.reason_of("db"),
        "environment variable DB_PASSWORD changed (secret: its value is not recorded)"
    );
    assert_eq!(ws.count("db"), 2);
    for f in crate::common::files_under(ws.cache_dir()) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        let found = bytes.windows(7).any(|w| w == b"hunter2");
        assert!(!found, "the secret is stored in {}", f.display());
    }
}
