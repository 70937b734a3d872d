"""scripts/check-deploy --image: the image built and run with buildah and podman, and what
runs in it as compose and Kubernetes would run it. Imported by scripts/check-deploy (its
helpers come from there)."""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

from __main__ import (  # noqa: F401 (scripts/check-deploy, which imports this module)
    CheckFailed, IMAGE_DIR, ROOT, SECRET_KEYS, TOOLS, chart_objects, compose, gatehouse_binary, need, render, run,
)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_image(rep, binary, filters):
    """Build the `prebuilt` stage from a binary and filters built outside, then run it: the
    CLI, its user and libraries, and the gateway serving /readyz from the baked-in filters."""
    podman, buildah = shutil.which("podman"), shutil.which("buildah")
    if not (podman and buildah and shutil.which("runc")):
        rep.skip_tool("image", "podman/buildah/runc absent (run ensure_deploy_image_tools)")
        return
    if not (pathlib.Path(binary).exists() and list(pathlib.Path(filters).glob("gatehouse_filter_*.wasm"))):
        rep.skip_tool("image", f"no binary at {binary} or no filters in {filters} (cargo build; scripts/build-components)")
        return
    store = ["--root", str(IMAGE_DIR / "storage"), "--runroot", str(IMAGE_DIR / "run"), "--storage-driver", "vfs"]
    # Here: runc (crun refuses this machine's hybrid cgroups), limits below the sandbox's
    # hard ones, the host's network (loopback ports).
    pod = [podman, *store, "--runtime", "runc"]
    limits = ["--network", "host", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
    prun = [*pod, "run", "--rm", *limits]
    base = "localhost/gatehouse-base:bookworm"
    tag = "localhost/gatehouse:check"
    host_bin = str(binary)

    def go():
        t0 = time.monotonic()
        if run([podman, *store, "image", "exists", base]).returncode != 0:
            rootfs = IMAGE_DIR / "rootfs"
            need(rootfs.exists(), f"no base image: {rootfs} missing (run ensure_deploy_image_tools)")
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            r = subprocess.run([podman, *store, "import", "-", base], stdin=tar.stdout, capture_output=True, text=True)
            need(r.returncode == 0, r.stderr)
        with tempfile.TemporaryDirectory() as ctx:
            # Debug information out (a debug build is hundreds of MB of it; vfs copies layers).
            if shutil.which("strip"):
                need(run(["strip", "--strip-debug", "-o", str(pathlib.Path(ctx) / "gatehouse"), str(binary)]).returncode == 0, "strip")
            else:
                shutil.copy2(binary, pathlib.Path(ctx) / "gatehouse")
            (pathlib.Path(ctx) / "filters").mkdir()
            for w in sorted(pathlib.Path(filters).glob("gatehouse_filter_*.wasm")):
                shutil.copy2(w, pathlib.Path(ctx) / "filters" / w.name)
            r = run([buildah, *store, "bud", "--isolation", "chroot", "--layers=false", "--pull-never",
                     "--build-arg", f"RUNTIME_BASE_IMAGE={base}", "--target", "prebuilt",
                     "-f", str(ROOT / "Dockerfile"), "-t", tag, ctx], timeout=900)
            need(r.returncode == 0, (r.stdout + r.stderr)[-3000:])
        built = time.monotonic() - t0
        run([*pod, "image", "prune", "-f"])  # the previous run's image, untagged by this one
        r = run([*prun, tag, "--version"])
        need(r.returncode == 0 and r.stdout.startswith("gatehouse"), r.stdout + r.stderr)
        version = r.stdout.strip()
        r = run([*prun, "--entrypoint", "/bin/sh", tag, "-c",
                 "id -u; ls /usr/lib/gatehouse/filters | wc -l; ldd /usr/lib/gatehouse/gatehouse | grep -c 'not found' || true"])
        need(r.returncode == 0, r.stderr)
        uid, nfilters, missing = r.stdout.split()
        need(uid == "10001", f"runs as uid {uid}")
        need(missing == "0", "libraries missing in the image: ldd says not found")
        # The gateway in the image, read-only root, as its user: a bundle signed on the
        # host, the filters from the image (no GATEHOUSE_FILTER_DIR), /readyz from outside.
        with tempfile.TemporaryDirectory() as d:
            dp = pathlib.Path(d)
            need(run([host_bin, "keys", "generate", "--out-dir", str(dp / "keys")]).returncode == 0, "keys generate")
            shutil.copy2(ROOT / "examples/policy.toml", dp / "policy.toml")  # its jwks_file: keys/…
            r = run([host_bin, "policy", "compile", "--policy", str(dp / "policy.toml"),
                     "--signing-key", str(dp / "keys/bundle-signing.pem"), "--out", str(dp / "bundle.ghb")])
            need(r.returncode == 0, r.stderr)
            admin, listen = free_port(), free_port()
            (dp / "gateway.toml").write_text(
                f'[listen]\naddr = "127.0.0.1:{listen}"\nadmin = "127.0.0.1:{admin}"\n'
                '[bundle]\nfile = "bundle.ghb"\npublic_key = "keys/bundle-signing.pub.pem"\nsecrets = "keys/edge-secrets.toml"\n'
                '[filters]\ncache_dir = "/tmp/cwasm"\n'
                f'[[routes]]\nupstream = "http://127.0.0.1:{free_port()}"\nfilters = ["gatehouse"]\n')
            for f in dp.rglob("*"):
                f.chmod(0o755 if f.is_dir() else 0o644)  # readable by the image's user
            dp.chmod(0o755)
            name = f"gatehouse-check-{os.getpid()}"
            r = run([*prun, "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "-e", "GATEHOUSE_LOG=warn", "-v", f"{d}:/etc/gatehouse/check:ro", tag,
                     "gateway", "--config", "/etc/gatehouse/check/gateway.toml"])
            need(r.returncode == 0, r.stderr)
            try:
                import urllib.request
                t1, status = time.monotonic(), None
                while time.monotonic() - t1 < 60 and status != 200:
                    try:
                        status = urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=2).status
                    except OSError:
                        time.sleep(0.3)
                ready = time.monotonic() - t1
                logs = run([*pod, "logs", name]).stderr
                need(status == 200, f"/readyz never 200 within 60 s: {logs[-2000:]}")
                # A request without a credential: the engine in the baked-in filters refuses it.
                try:
                    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{listen}/api/x",
                                                                  headers={"Host": "acme.example.test"}), timeout=5)
                    code = 200
                except urllib.error.HTTPError as e:
                    code = e.code
                need(code == 401, f"expected 401 from the gateway in the image, got {code}")
            finally:
                run([*pod, "rm", "-f", "-t", "2", name])
        size = run([podman, *store, "image", "inspect", tag, "--format", "{{.Size}}"]).stdout.strip()
        return (f"{version}; built in {built:.0f} s, {int(size) / 1e6:.0f} MB; uid 10001; {nfilters} filters; "
                f"ldd complete; gateway ready in {ready:.1f} s, 401 without a credential")
    rep.check("image: buildah bud --target prebuilt, podman run", go)
    if run([podman, *store, "image", "exists", tag]).returncode == 0:
        check_compose_stack(rep, pod, tag)
        if gatehouse_binary():
            check_chart_pods(rep, pod, tag, host_bin)


def port_free(port):
    import socket
    with socket.socket() as s:
        # As the servers bind (SO_REUSEADDR): a port in TIME_WAIT after the last check is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def http(method, url, body=None, headers=None, timeout=5):
    """One HTTP exchange: (status, body as text)."""
    import urllib.request
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def check_compose_stack(rep, pod, tag):
    """compose.yaml's services run from the image as compose would run them (podman, from
    `docker-compose config`'s model: user, read-only root, capabilities, volumes, commands,
    the healthchecks), on the host's network with the service names on 127.0.0.1; then an
    organisation, a sign-in and requests through the gateway to the demo app."""
    if not (TOOLS / "docker-compose").exists():
        rep.skip_tool("compose stack", "docker-compose absent (run ensure_deploy_tools)")
        return
    r = compose(["config", "--format", "json"])
    if r.returncode != 0:
        rep.fail("compose stack", r.stderr)
        return
    model = json.loads(r.stdout)
    ports = sorted({int(p["published"]) for svc in model["services"].values() for p in svc.get("ports", [])})
    busy = [p for p in ports if not port_free(p)]
    if busy:
        rep.not_here("compose stack", f"ports {busy} in use on this machine (the stack publishes {ports})")
        return
    prefix = f"ghcheck{os.getpid()}"
    limits = ["--network", "host", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
    hosts = [a for s in model["services"] for a in ("--add-host", f"{s}:127.0.0.1")]

    def args_of(name, svc):
        a = [*limits, *hosts, "--name", f"{prefix}_{name}"]
        if svc.get("user"):
            a += ["--user", svc["user"]]
        if svc.get("read_only"):
            a.append("--read-only")
        a += [x for c in svc.get("cap_drop", []) for x in ("--cap-drop", c)]
        a += [x for c in svc.get("cap_add", []) for x in ("--cap-add", c)]
        a += [x for o in svc.get("security_opt", []) for x in ("--security-opt", o)]
        a += [x for k, v in svc.get("environment", {}).items() for x in ("-e", f"{k}={v}")]
        for v in svc.get("volumes", []):
            src = v["source"] if v["type"] == "bind" else f"{prefix}_{v['source']}"
            a += ["-v", f"{src}:{v['target']}" + (":ro" if v.get("read_only") else "")]
        if svc.get("entrypoint"):
            a += ["--entrypoint", json.dumps(svc["entrypoint"])]
        return [*a, tag, *(svc.get("command") or [])]

    def healthy(name, svc, within):
        test = svc["healthcheck"]["test"]
        need(test[0] == "CMD", f"{name}: healthcheck {test[0]}")
        t1 = time.monotonic()
        while time.monotonic() - t1 < within:
            if run([*pod, "exec", f"{prefix}_{name}", *test[1:]], timeout=10).returncode == 0:
                return time.monotonic() - t1
            state = run([*pod, "inspect", "-f", "{{.State.Running}}", f"{prefix}_{name}"]).stdout.strip()
            if state != "true":
                break
            time.sleep(0.5)
        logs = run([*pod, "logs", f"{prefix}_{name}"])
        raise CheckFailed(f"{name}: not healthy (exited, or not within {within} s): {(logs.stdout + logs.stderr)[-1500:]}")

    def go():
        svcs = model["services"]
        for v in model.get("volumes", {}):
            need(run([*pod, "volume", "create", f"{prefix}_{v}"]).returncode == 0, f"volume {v}")
        r = run([*pod, "run", "--rm", *args_of("init", svcs["init"])], timeout=120)
        need(r.returncode == 0, f"init: {r.stdout}{r.stderr}")
        times = {}
        for name in ("origin", "app", "gateway"):
            r = run([*pod, "run", "-d", *args_of(name, svcs[name])])
            need(r.returncode == 0, f"{name}: {r.stderr}")
            if "healthcheck" in svcs[name]:
                times[name] = healthy(name, svcs[name], 60)
        op = run([*pod, "exec", f"{prefix}_origin", "cat", "/var/lib/gatehouse/keys/operator.token"]).stdout.strip()
        need(op, "no operator token in the keys volume")
        password = "check-" + os.urandom(12).hex()
        st, body = http("POST", "http://127.0.0.1:7400/v1/orgs", {
            "slug": "acme", "name": "Acme", "tier": "team", "owner_email": "admin@acme.example.test",
            "owner_password": password, "policy": {"hosts": ["localhost"]}}, {"authorization": f"Bearer {op}"})
        need(st == 201, f"create organisation: {st} {body}")
        st, body = http("POST", "http://127.0.0.1:7400/t/acme/token",
                        {"grant_type": "password", "email": "admin@acme.example.test", "password": password})
        need(st == 200, f"sign-in: {st} {body}")
        token = json.loads(body)["access_token"]
        # The gateway learns of the organisation with its next bundle poll.
        t1, st = time.monotonic(), None
        while time.monotonic() - t1 < 30 and st != 200:
            st, body = http("GET", "http://127.0.0.1:8080/whoami",
                            headers={"host": "localhost", "authorization": f"Bearer {token}", "x-gatehouse-subject": "spoofed"})
            if st != 200:
                time.sleep(0.5)
        need(st == 200, f"allowed request through the gateway: {st} {body}")
        echo = json.loads(body)
        need(echo.get("upstream") == "gatehouse demo app", f"not the demo app: {body}")
        subject = echo["identity"].get("x-gatehouse-subject", "")
        need(subject and subject != "spoofed", f"identity not the token's: {echo['identity']}")
        st, body = http("GET", "http://127.0.0.1:8080/whoami", headers={"host": "localhost"})
        need(st == 401, f"request without a credential: {st} {body}")
        return (f"init, origin healthy in {times['origin']:.1f} s, gateway healthy in {times['gateway']:.1f} s; "
                f"organisation, sign-in, 200 through the gateway with the token's identity (a spoofed one dropped), 401 without")

    try:
        rep.check("compose stack: the services from the image, by compose.yaml's model", go)
    finally:
        for name in model["services"]:
            run([*pod, "rm", "-f", "-t", "2", f"{prefix}_{name}"])
        for v in model.get("volumes", {}):
            run([*pod, "volume", "rm", "-f", f"{prefix}_{v}"])


def check_chart_pods(rep, pod, tag, host_bin):
    """The chart's workloads run from the image as the kubelet would run their pod specs
    (podman: args, env with Secret values, ConfigMap / Secret items / emptyDir / claim
    volumes, uid, fsGroup, read-only root, no capabilities), on the host's network with the
    rendered Services' names on 127.0.0.1; their readiness probes must pass; then an
    organisation, a sign-in, a request through the gateway and a check at the authz
    service. Real keys; ports kept apart by values (one network here, not one per pod)."""
    ports = [7400, 9464, 8080, 9090, 9191, 9192, 9091, 3000]
    busy = [p for p in ports if not port_free(p)]
    if busy:
        rep.not_here("chart pods", f"ports {busy} in use on this machine")
        return
    prefix = f"ghpod{os.getpid()}"
    started, volumes = [], []

    def go():
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="gh-chart-"))
        keys = tmp / "keys"
        need(run([host_bin, "keys", "generate", "--out-dir", str(keys)]).returncode == 0, "keys generate")
        files = {f.name: f.read_text() for f in keys.iterdir() if f.name in SECRET_KEYS}
        tok = lambda: os.urandom(24).hex()
        files.update({"edge.token": tok(), "operator.token": tok(), "peer.token": tok()})
        files["edge.tokens"] = f"gateway {files['edge.token']}\n"
        files["apikey.secret"] = next(l.split('"')[1] for l in files["edge-secrets.toml"].splitlines() if l.startswith("api_key_secret"))
        values = {
            "image": {"repository": tag.rsplit(":", 1)[0], "tag": tag.rsplit(":", 1)[1]},
            "secrets": {"files": files}, "authz": {"enabled": True, "ports": {"admin": 9091}},
            "origin": {"ports": {"admin": 9464}, "regions": [{"name": "eu-west", "publicUrl": "http://localhost:7400"}]},
            "gateway": {"routes": [{"upstream": "http://127.0.0.1:3000"}]},
        }
        objs = chart_objects(render(values))
        by = lambda kind: [o for o, _ in objs if o["kind"] == kind]
        cms = {o["metadata"]["name"]: o["data"] for o in by("ConfigMap")}
        secret = by("Secret")[0]["stringData"]
        hosts = []
        for svc in by("Service"):
            n = svc["metadata"]["name"]
            hosts += ["--add-host", f"{n}:127.0.0.1", "--add-host", f"{n}.gatehouse.svc:127.0.0.1",
                      "--add-host", f"{n}.gatehouse.svc.cluster.local:127.0.0.1"]
        base = ["--network", "host", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096", *hosts]
        r = run([*pod, "run", "-d", "--name", f"{prefix}_app", *base, tag, "upstream", "--listen", "127.0.0.1:3000"])
        need(r.returncode == 0, r.stderr)
        started.append(f"{prefix}_app")
        probes = []
        for w in by("StatefulSet") + by("Deployment"):
            name = w["metadata"]["name"]
            spec = w["spec"]["template"]["spec"]
            c = spec["containers"][0]
            psc, sc = spec["securityContext"], c["securityContext"]
            a = [*base, "--name", f"{prefix}_{name}", "--user", f"{psc['runAsUser']}:{psc['runAsGroup']}",
                 "--group-add", str(psc["fsGroup"])]
            if sc.get("readOnlyRootFilesystem"):
                a.append("--read-only")
            if sc.get("capabilities", {}).get("drop") == ["ALL"]:
                a += ["--cap-drop", "ALL"]
            if sc.get("allowPrivilegeEscalation") is False:
                a += ["--security-opt", "no-new-privileges"]
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                a += ["-e", f"{e['name']}={secret[ref['key']] if ref else e['value']}"]
            vols = {v["name"]: v for v in spec["volumes"]}
            for m in c["volumeMounts"]:
                v = vols.get(m["name"])
                if v is None:  # a volumeClaimTemplate: a volume of its own
                    vname = f"{prefix}_{name}_{m['name']}"
                    need(run([*pod, "volume", "create", vname]).returncode == 0, vname)
                    volumes.append(vname)
                    # A fresh claim is writable by the pod's fsGroup (the kubelet's chown).
                    r = run([*pod, "run", "--rm", *base[:6], "--user", "0", "-v", f"{vname}:/v", "--entrypoint", "/bin/chown", tag,
                             f"{psc['runAsUser']}:{psc['fsGroup']}", "/v"])
                    need(r.returncode == 0, r.stderr)
                    a += ["-v", f"{vname}:{m['mountPath']}"]
                elif "emptyDir" in v:
                    a += ["--tmpfs", f"{m['mountPath']}:rw,mode=1777"]
                else:
                    d = tmp / name / m["name"]
                    d.mkdir(parents=True)
                    if "configMap" in v:
                        items = {k: (k, t) for k, t in cms[v["configMap"]["name"]].items()}
                        mode = 0o644
                    else:
                        items = {i["path"]: (i["key"], secret[i["key"]]) for i in v["secret"]["items"]}
                        mode = v["secret"].get("defaultMode", 0o644) | 0o040  # fsGroup: group-readable
                    for path, (_, text) in items.items():
                        (d / path).write_text(text)
                        os.chown(d / path, 0, psc["fsGroup"])
                        (d / path).chmod(mode)
                    d.chmod(0o755)
                    a += ["-v", f"{d}:{m['mountPath']}:ro"]
            r = run([*pod, "run", "-d", *a, tag, *c["args"]])
            need(r.returncode == 0, f"{name}: {r.stderr}")
            started.append(f"{prefix}_{name}")
            port = {p["name"]: p["containerPort"] for p in c["ports"]}[c["readinessProbe"]["httpGet"]["port"]]
            probes.append((name, port, c["readinessProbe"]["httpGet"]["path"]))
        ready = {}
        for name, port, path in probes:
            t1, st = time.monotonic(), None
            while time.monotonic() - t1 < 90 and st != 200:
                try:
                    st, _ = http("GET", f"http://127.0.0.1:{port}{path}", timeout=2)
                except OSError:
                    st = None
                if st != 200:
                    alive = run([*pod, "inspect", "-f", "{{.State.Running}}", f"{prefix}_{name}"]).stdout.strip()
                    if alive != "true":
                        break
                    time.sleep(0.5)
            logs = run([*pod, "logs", f"{prefix}_{name}"])
            need(st == 200, f"{name}: readiness {path} on :{port} is {st}: {(logs.stdout + logs.stderr)[-1500:]}")
            ready[name.rsplit("-", 2)[-1] if "origin" not in name else "origin"] = time.monotonic() - t1
        password = "check-" + os.urandom(12).hex()
        st, body = http("POST", "http://127.0.0.1:7400/v1/orgs", {
            "slug": "acme", "name": "Acme", "tier": "team", "owner_email": "admin@acme.example.test",
            "owner_password": password, "policy": {"hosts": ["localhost"]}}, {"authorization": f"Bearer {secret['operator.token']}"})
        need(st == 201, f"create organisation: {st} {body}")
        st, body = http("POST", "http://127.0.0.1:7400/t/acme/token",
                        {"grant_type": "password", "email": "admin@acme.example.test", "password": password})
        need(st == 200, f"sign-in: {st} {body}")
        token = json.loads(body)["access_token"]
        t1, st, ast = time.monotonic(), None, None
        while time.monotonic() - t1 < 30 and (st, ast) != (200, 200):
            st, body = http("GET", "http://127.0.0.1:8080/whoami", headers={"host": "localhost", "authorization": f"Bearer {token}"})
            ast, abody = http("GET", "http://127.0.0.1:9191/", headers={
                "authorization": f"Bearer {token}", "x-forwarded-method": "GET", "x-forwarded-uri": "/whoami",
                "x-forwarded-host": "localhost", "x-forwarded-proto": "http"})
            if (st, ast) != (200, 200):
                time.sleep(0.5)
        need(st == 200 and json.loads(body)["identity"].get("x-gatehouse-subject"), f"gateway: {st} {body}")
        need(ast == 200, f"authz check: {ast} {abody}")
        st, _ = http("GET", "http://127.0.0.1:8080/whoami", headers={"host": "localhost"})
        ast, _ = http("GET", "http://127.0.0.1:9191/", headers={"x-forwarded-method": "GET", "x-forwarded-uri": "/whoami", "x-forwarded-host": "localhost"})
        need((st, ast) == (401, 401), f"without a credential: gateway {st}, authz {ast}")
        shutil.rmtree(tmp, ignore_errors=True)
        return ("ready: " + ", ".join(f"{k} {v:.1f} s" for k, v in ready.items())
                + "; organisation, sign-in, 200 through the gateway and from the authz check, 401 without a credential")

    try:
        rep.check("chart pods: the rendered workloads from the image (podman)", go)
    finally:
        for c in started:
            run([*pod, "rm", "-f", "-t", "2", c])
        for v in volumes:
            run([*pod, "volume", "rm", "-f", v])
