using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using IoMux.Web.Http;

namespace IoMux.Tests.Web;

/// <summary>The HTTP server under clients that share none of its code or of the tests' raw-socket helpers: curl,
/// Python's http.client, and a real browser (headless Chromium). Each client runs with its own deadline, and the
/// server's keep-alive timeout is long (30 s) so that a response which only ends when that timer fires makes the
/// client miss its deadline instead of passing.</summary>
[Category("System")]
[NonParallelizable]
public sealed class IndependentClientTests
{
    private const int BigLength = 8 << 20;
    private const int StreamLength = 12 << 20; // more than loopback's socket buffers hold
    private string _root = null!;
    private byte[] _big = null!;
    private HttpServer _files = null!, _handler = null!;

    [OneTimeSetUp]
    public void Start()
    {
        _root = Directory.CreateTempSubdirectory("iomux-clients-").FullName;
        _big = new byte[BigLength];
        new Random(23).NextBytes(_big);
        File.WriteAllBytes(Path.Combine(_root, "big.bin"), _big);
        var options = new HttpServerOptions { ThreadCount = 1, KeepAliveTimeout = TimeSpan.FromSeconds(30) };
        _files = HttpServer.StaticFiles(new IPEndPoint(IPAddress.Loopback, 0), _root, options);
        _handler = HttpServer.Create(new IPEndPoint(IPAddress.Loopback, 0), (_, response) =>
        {
            long produced = 0;
            response.SendBody(buffer =>
            {
                int n = (int)Math.Min(buffer.Length, StreamLength - produced);
                buffer[..n].Fill((byte)'x');
                produced += n;
                return n;
            });
        }, options);
    }

    [OneTimeTearDown]
    public void Stop()
    {
        _files.Dispose();
        _handler.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    /// <summary>Runs a command, failing the test when it has not exited within <paramref name="deadline"/> (it is
    /// killed then); its exit code, standard output and error.</summary>
    internal static (int ExitCode, string Output, string Error, TimeSpan Elapsed) Run(string file, IEnumerable<string> arguments, TimeSpan deadline)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(deadline))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(5_000);
            Assert.Fail($"{file} did not finish within {deadline.TotalSeconds:F0} s");
        }
        var elapsed = clock.Elapsed;
        Assert.That(Task.WaitAll([output, error], TimeSpan.FromSeconds(5)), Is.True, $"{file}'s output did not end");
        return (process.ExitCode, output.Result, error.Result, elapsed);
    }

    private static string Require(string tool)
    {
        foreach (var directory in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':'))
            if (File.Exists(Path.Combine(directory, tool)))
                return Path.Combine(directory, tool);
        Assert.Ignore($"{tool} is not installed");
        return "";
    }

    /// <summary>curl reads a close-delimited body (HTTP/1.0, no Content-Length) until the server closes: it ends as
    /// soon as the last byte is out, not 30 s later. The rate limit makes the server's socket fill, so the response
    /// takes many writes. --max-time is the deadline, and it fails curl with exit 28.</summary>
    [Test]
    public void CurlReadsABodyDelimitedByTheCloseWithoutWaitingForATimer()
    {
        var (exit, output, error, elapsed) = Run(Require("curl"), ["--http1.0", "-sS", "--max-time", "15", "--limit-rate", "16M", "-o", "/dev/null",
            "-w", "%{http_code} %{size_download}", $"http://{_handler.Endpoint}/stream"], TimeSpan.FromSeconds(25));
        Assert.That(exit, Is.EqualTo(0), error);
        Assert.That(output, Is.EqualTo($"200 {StreamLength}"));
        Assert.That(elapsed, Is.LessThan(TimeSpan.FromSeconds(10)));
    }

    /// <summary>curl at a limited rate (a slow reader: the server's socket fills) with "Connection: close": the
    /// whole file, intact.</summary>
    [Test]
    public void CurlAtALimitedRateGetsTheWholeFile()
    {
        string output = Path.Combine(_root, "curl.out");
        var (exit, written, error, _) = Run(Require("curl"), ["-sS", "--max-time", "20", "--limit-rate", "8M", "-H", "Connection: close",
            "-o", output, "-w", "%{http_code}", $"http://{_files.Endpoint}/big.bin"], TimeSpan.FromSeconds(30));
        Assert.That(exit, Is.EqualTo(0), error);
        Assert.That(written, Is.EqualTo("200"));
        Assert.That(SHA256.HashData(File.ReadAllBytes(output)), Is.EqualTo(SHA256.HashData(_big)));
    }

    /// <summary>Python's http.client: an HTTP/1.0 request whose body has no length is read to the close, and a
    /// "Connection: close" download, parsed by http.client, is followed by EOF on its socket within a second of the
    /// last byte (a timeout there reports the connection still open).</summary>
    [Test]
    public void PythonHttpClientSeesTheCloseRightAfterTheLastByte()
    {
        const string script = """
            import http.client, socket, sys, time
            host, files, handler = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
            c = http.client.HTTPConnection(host, handler, timeout=10)
            c._http_vsn, c._http_vsn_str = 10, 'HTTP/1.0'
            c.request('GET', '/stream')
            r = c.getresponse()
            body = r.read()
            print('stream', r.status, len(body))
            sock = socket.create_connection((host, files), timeout=10)
            sock.sendall(b'GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n')
            r = http.client.HTTPResponse(sock)  # http.client parses; the socket stays this script's to watch
            r.begin()
            got = 0
            while True:
                chunk = r.read(65536)
                if not chunk:
                    break
                got += len(chunk)
                time.sleep(0.002)
            sock.settimeout(1.0)
            try:
                eof = sock.recv(1) == b''
            except socket.timeout:
                eof = False
            print('file', r.status, got, 'eof' if eof else 'open')
            """;
        var (exit, output, error, _) = Run("python3", ["-c", script, "127.0.0.1", _files.Endpoint.Port.ToString(), _handler.Endpoint.Port.ToString()],
            TimeSpan.FromSeconds(40));
        Assert.That(exit, Is.EqualTo(0), error);
        Assert.That(output.Split('\n', StringSplitOptions.RemoveEmptyEntries),
            Is.EqualTo(new[] { $"stream 200 {StreamLength}", $"file 200 {BigLength} eof" }));
    }
    /// <summary>A page with a module script importing another module, a WebAssembly module compiled while it streams,
    /// a font and a WebP image, loaded by headless Chromium from <c>iomux serve</c>'s static server: the page's script
    /// writes what loaded, and the browser logs no console error. A module script served as
    /// application/octet-stream is refused by the browser, and instantiateStreaming refuses anything but
    /// application/wasm: so this fails with the old nine-entry MIME table.</summary>
    [Test]
    public void APageWithModulesWasmAFontAndAnImageLoadsInChromium()
    {
        string chromium = FindChromium();
        string font = Directory.Exists("/usr/share/fonts") ? Directory.EnumerateFiles("/usr/share/fonts", "*.ttf", SearchOption.AllDirectories).FirstOrDefault() ?? "" : "";
        if (font == "")
            Assert.Ignore("no TrueType font under /usr/share/fonts to serve (Chromium's package brings fonts-liberation)");
        string site = Directory.CreateTempSubdirectory("iomux-browser-").FullName;
        string profile = Directory.CreateTempSubdirectory("iomux-chromium-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(site, "index.html"), """
                <!doctype html><html><head><meta charset="utf-8"><title>iomux</title>
                <style>@font-face { font-family: Served; src: url(/font.ttf) format("truetype"); }</style>
                <script type="module" src="/app.mjs"></script></head>
                <body><p id="result">pending</p><img id="image" src="/pixel.webp" alt=""></body></html>
                """);
            File.WriteAllText(Path.Combine(site, "app.mjs"), """
                import { answer } from "./lib/answer.mjs";
                const loaded = [];
                const { instance } = await WebAssembly.instantiateStreaming(fetch("/add.wasm"));
                loaded.push("wasm " + instance.exports.add(40, 2));
                await document.getElementById("image").decode();
                loaded.push("webp");
                await new FontFace("Served", "url(/font.ttf)").load();
                loaded.push("font");
                document.getElementById("result").textContent = "loaded: module " + answer + ", " + loaded.join(", ");
                """);
            Directory.CreateDirectory(Path.Combine(site, "lib"));
            File.WriteAllText(Path.Combine(site, "lib", "answer.mjs"), "export const answer = 42;\n");
            // (module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)), assembled by hand
            // from the binary format spec (sections: type, function, export, code).
            File.WriteAllBytes(Path.Combine(site, "add.wasm"), [
                0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
                0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f,
                0x03, 0x02, 0x01, 0x00,
                0x07, 0x07, 0x01, 0x03, 0x61, 0x64, 0x64, 0x00, 0x00,
                0x0a, 0x09, 0x01, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b]);
            // A 1x1 lossless WebP (the image Modernizr's feature test decodes).
            File.WriteAllBytes(Path.Combine(site, "pixel.webp"), Convert.FromBase64String("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA=="));
            File.Copy(font, Path.Combine(site, "font.ttf"));
            using var server = HttpServer.StaticFiles(new IPEndPoint(IPAddress.Loopback, 0), site, new HttpServerOptions { ThreadCount = 1 });
            // The flags this machine's notes give for headless Chromium with no network beyond loopback.
            var (exit, dom, log, _) = Run(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", $"--user-data-dir={profile}",
                "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom", $"http://{server.Endpoint}/index.html"],
                TimeSpan.FromSeconds(90));
            Assert.That(exit, Is.EqualTo(0), log);
            Assert.That(dom, Does.Contain("loaded: module 42, wasm 42, webp, font"), $"the page did not load everything; browser log:\n{log}");
            var consoleErrors = log.Split('\n').Where(l => l.Contains("CONSOLE", StringComparison.Ordinal)).ToList();
            Assert.That(consoleErrors, Is.Empty, "console messages");
        }
        finally
        {
            Directory.Delete(site, recursive: true);
            Directory.Delete(profile, recursive: true);
        }
    }

    /// <summary>Debian's chromium, installed with apt-get when missing and this user is root (as nginx is for the
    /// proxy tests); the test is skipped, saying why, where that cannot be done.</summary>
    private static string FindChromium()
    {
        foreach (var candidate in new[] { "/usr/bin/chromium", "/usr/bin/chromium-browser" })
            if (File.Exists(candidate))
                return candidate;
        if (Environment.UserName != "root")
            Assert.Ignore("chromium is not installed and this user cannot install it (apt-get install chromium)");
        var (exit, _, error, _) = Run("bash", ["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium"],
            TimeSpan.FromMinutes(10));
        if (exit != 0 || !File.Exists("/usr/bin/chromium"))
            Assert.Ignore($"apt-get install chromium failed (exit code {exit}): {error}");
        return "/usr/bin/chromium";
    }
}
