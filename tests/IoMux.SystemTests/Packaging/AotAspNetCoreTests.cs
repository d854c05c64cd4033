using System.Diagnostics;
using System.Net;
using System.Net.WebSockets;
using System.Text.RegularExpressions;
using IoMux.Tests.Proxy;

namespace IoMux.Tests.Packaging;

/// <summary>An ASP.NET Core app on the IoMux transport under Native AOT (issue 24): samples/AspNetCore (minimal APIs,
/// <c>UseIoMux()</c>, a WebSocket) published with its own PublishAot for linux-x64, once for the fixture (a native
/// compile takes 2-5 minutes on a loaded 2-core machine: category "Aot", as <see cref="AotPublishTests"/>), then its
/// native binary serves GET, POST and a WebSocket on loopback. No trim or AOT warning may come from IoMux (the
/// libraries or the sample); one from ASP.NET Core itself would be printed with the test's output, not hidden, and
/// does not fail it: it is not IoMux's to fix.</summary>
[Category("Aot")]
[NonParallelizable]
public sealed partial class AotAspNetCoreTests
{
    private string _work = "";
    private string _log = "";
    private string _root = "";
    private Process? _app;
    private Uri _base = new("http://127.0.0.1:1");
    private Task<string>? _appOutput;

    [OneTimeSetUp] // no CancelAfter: each step runs under its own deadline
    public async Task PublishAndStart()
    {
        if (!OperatingSystem.IsLinux() || System.Runtime.InteropServices.RuntimeInformation.OSArchitecture != System.Runtime.InteropServices.Architecture.X64)
            Assert.Ignore("the sample is published for linux-x64, on a linux-x64 host");
        var root = _root = TestProcesses.RepositoryRoot();
        _work = Directory.CreateTempSubdirectory("iomux-aot-aspnetcore-").FullName;
        var output = Path.Combine(_work, "out");
        // The documented command (docs/ASPNETCORE.md): the project asks for Native AOT itself. Under the run settings'
        // 10-minute hang timeout, so that a slow machine fails here with the output. --disable-build-servers: no
        // MSBuild node or compiler server outlives the publish holding its output pipes. The native compiler's
        // warnings stay warnings (the repository makes them errors): the test sorts them by origin below.
        var started = Stopwatch.StartNew();
        _log = PackageInstallTests.Run(root, "dotnet", ["publish", "samples/AspNetCore", "-c", "Release", "-r", "linux-x64",
            "-p:IlcTreatWarningsAsErrors=false", "--disable-build-servers", "-nologo", "-o", output], packages: null, TimeSpan.FromMinutes(9));
        TestContext.Progress.WriteLine($"AotAspNetCoreTests: published in {started.Elapsed.TotalSeconds:F0} s");
        var binary = Path.Combine(output, "IoMux.Samples.AspNetCore");
        Assert.That(File.ReadAllBytes(binary).Take(4), Is.EqualTo(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' }), $"{binary} is not native");
        Assert.That(File.Exists(Path.Combine(output, "IoMux.Samples.AspNetCore.dll")), Is.False, "a managed assembly beside the native binary");

        int port = ProxyProcess.FreePort();
        var start = new ProcessStartInfo(binary) { WorkingDirectory = output, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("--port");
        start.ArgumentList.Add(port.ToString());
        start.Environment["Logging__LogLevel__Default"] = "Warning"; // no line per request
        _app = Process.Start(start)!;
        _appOutput = Task.WhenAll(_app.StandardOutput.ReadToEndAsync(), _app.StandardError.ReadToEndAsync()).ContinueWith(t => string.Concat(t.Result));
        _base = new Uri($"http://127.0.0.1:{port}");
        // Ready when it answers; a native binary starts in milliseconds, the 30 s are for a loaded machine.
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            Assert.That(_app.HasExited, Is.False, () => $"the native app exited ({_app.ExitCode}): {Output()}");
            try
            {
                using var response = await client.GetAsync(new Uri(_base, "/hello"));
                break;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && deadline.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(100);
            }
        }
    }

    [OneTimeTearDown]
    public void Stop()
    {
        if (_app is { HasExited: false })
        {
            _app.Kill();
            Assert.That(_app.WaitForExit(TimeSpan.FromSeconds(30)), Is.True, "the native app did not die");
        }
        _app?.Dispose();
        if (_work.Length > 0)
            Directory.Delete(_work, recursive: true);
    }

    private string Output() => _appOutput is { } o && o.Wait(TimeSpan.FromSeconds(5)) ? o.Result : "(the app's output is still open)";

    // "path(line,col): warning IL2026: ..." or "ILC : Trim analysis warning IL2075: Member..." (MSBuild prints each twice).
    [GeneratedRegex(@"^.*\bwarning\s+[A-Z]+\d+:.*$", RegexOptions.Multiline)]
    private static partial Regex WarningLine();

    [GeneratedRegex(@"\s+\[[^\]]*\.csproj(::[^\]]*)?\]$")]
    private static partial Regex ProjectSuffix();

    [Test]
    public void NoTrimOrAotWarningComesFromIoMux()
    {
        // Without the project MSBuild appends ("[.../samples/AspNetCore/AspNetCore.csproj]"): it names who built, not who warned.
        var warnings = WarningLine().Matches(_log).Select(m => ProjectSuffix().Replace(m.Value.Trim(), "")).Distinct().ToList();
        var ours = warnings.Where(w => w.Contains("IoMux", StringComparison.Ordinal) || w.StartsWith(_root, StringComparison.Ordinal)).ToList();
        foreach (var other in warnings.Except(ours))
            TestContext.Out.WriteLine($"not from IoMux (reported, not fixed here): {other}");
        Assert.That(ours, Is.Empty, "trim or AOT warnings from IoMux's code");
        // The word alone as well: a warning printed in another shape than the pattern must not pass unseen.
        Assert.That(_log.Split('\n').Select(l => ProjectSuffix().Replace(l.Trim(), ""))
            .Where(l => l.Contains("warning", StringComparison.OrdinalIgnoreCase) && (l.Contains("IoMux", StringComparison.Ordinal) || l.StartsWith(_root, StringComparison.Ordinal))), Is.Empty);
    }

    [Test, CancelAfter(60_000)]
    public async Task GetAnswers(CancellationToken token)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        Assert.That(await client.GetStringAsync(new Uri(_base, "/hello"), token), Is.EqualTo("Hello from Kestrel on IoMux"));
    }

    [Test, CancelAfter(60_000)]
    public async Task PostEchoesTheBodyByteForByte(CancellationToken token)
    {
        // 1 MiB that no short pattern repeats through: a lost, doubled or reordered segment shows.
        var body = new byte[1 << 20];
        new Random(24).NextBytes(body);
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        using var response = await client.PostAsync(new Uri(_base, "/echo"), new ByteArrayContent(body), token);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var echoed = await response.Content.ReadAsByteArrayAsync(token);
        Assert.That(echoed.Length, Is.EqualTo(body.Length));
        Assert.That(echoed.AsSpan().SequenceEqual(body), Is.True, "the echo differs from what was sent");
    }

    [Test, CancelAfter(60_000)]
    public async Task AWebSocketEchoesTextAndBinaryMessages(CancellationToken token)
    {
        using var socket = new ClientWebSocket();
        var ws = new UriBuilder(_base) { Scheme = "ws", Path = "/ws" }.Uri;
        await socket.ConnectAsync(ws, token).WaitAsync(TimeSpan.FromSeconds(30), token);
        var binary = new byte[100_000]; // larger than the server's 16 KiB buffer: it comes back in several frames
        new Random(7).NextBytes(binary);
        foreach (var (message, type) in new[] { ("hello over IoMux"u8.ToArray(), WebSocketMessageType.Text), (binary, WebSocketMessageType.Binary) })
        {
            await socket.SendAsync(message, type, endOfMessage: true, token).WaitAsync(TimeSpan.FromSeconds(30), token);
            var received = new MemoryStream();
            var buffer = new byte[8192];
            WebSocketReceiveResult result;
            do
            {
                result = await socket.ReceiveAsync(buffer, token).WaitAsync(TimeSpan.FromSeconds(30), token);
                received.Write(buffer, 0, result.Count);
            } while (!result.EndOfMessage);
            Assert.That(result.MessageType, Is.EqualTo(type));
            Assert.That(received.ToArray().AsSpan().SequenceEqual(message), Is.True, $"the {type} echo differs ({received.Length} of {message.Length} bytes)");
        }
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", token).WaitAsync(TimeSpan.FromSeconds(30), token);
        Assert.That(socket.CloseStatus, Is.EqualTo(WebSocketCloseStatus.NormalClosure));
    }
}
