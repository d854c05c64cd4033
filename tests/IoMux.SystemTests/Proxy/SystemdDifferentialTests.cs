using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace IoMux.Tests.Proxy;

/// <summary>iomux-socket-proxyd against systemd-socket-proxyd itself (issue 21): each test runs the same scenario —
/// the same command line and environment under systemd-socket-activate, the same scripted clients and backends on
/// loopback — once with each binary, and compares what a user observes: the bytes each side receives, how each
/// connection ends (end of stream, reset, refusal), exit code and time to exit, and the priority of each class of
/// log line. A row either asserts that both saw the same, or asserts the difference docs/PROXY.md lists as intended
/// ("Compatibility with systemd-socket-proxyd"), so that a change on either side shows here.</summary>
[Category("System")]
[NonParallelizable]
public sealed partial class SystemdDifferentialTests
{
    private const string SystemdProxy = "/usr/lib/systemd/systemd-socket-proxyd";

    public enum Binary { Systemd, IoMux }

    private static string PathOf(Binary binary) => binary == Binary.Systemd ? SystemdProxy : ProxyProcess.ProxyPath;

    [OneTimeSetUp]
    public void RequireSystemdSocketProxyd()
    {
        if (!File.Exists(SystemdProxy))
            Assert.Ignore($"{SystemdProxy} is not installed (Debian's systemd package; .ci/run installs it): nothing to compare with");
        TestProcesses.RequireTool("systemd-socket-activate", "it starts both proxies as systemd would");
    }

    /// <summary>The environment both binaries get. Each writes its lines' syslog priority as a <c>&lt;N&gt;</c> prefix
    /// with one of these and ignores the other: systemd's log.c with SYSTEMD_LOG_TARGET=console-prefixed (it ignores a
    /// JOURNAL_STREAM that does not name its stderr), IoMux's StderrLogger with JOURNAL_STREAM set.</summary>
    private static Dictionary<string, string> Environment(string level = "info") => new()
    {
        ["SYSTEMD_LOG_TARGET"] = "console-prefixed",
        ["JOURNAL_STREAM"] = "8:1",
        ["SYSTEMD_LOG_LEVEL"] = level,
    };

    private static ProxyProcess Activate(Binary binary, string? workingDirectory, params string[] arguments) =>
        ProxyProcess.ActivatedBinary(PathOf(binary), Environment(), [], workingDirectory, arguments);

    /// <summary>The scenario with each binary, systemd's first.</summary>
    private static async Task<(T Systemd, T IoMux)> Both<T>(Func<Binary, Task<T>> scenario) =>
        (await scenario(Binary.Systemd), await scenario(Binary.IoMux));

    // ---- log lines -------------------------------------------------------------------------------------------------

    [GeneratedRegex(@"^<(\d+)>(.*)$")]
    private static partial Regex PrefixedLine();

    /// <summary>The priorities (0-7, the facility masked off: systemd writes LOG_DAEMON's 24 in) of the proxy's lines
    /// whose message starts with <paramref name="start"/>. systemd-socket-activate's own lines carry no prefix.</summary>
    private static List<int> Priorities(ProxyProcess proxy, string start) =>
        [.. PrefixedLines(proxy).Where(line => line.Message.StartsWith(start, StringComparison.Ordinal)).Select(line => line.Priority)];

    private static IEnumerable<(int Priority, string Message)> PrefixedLines(ProxyProcess proxy)
    {
        foreach (var line in proxy.Log.Split('\n'))
        {
            var match = PrefixedLine().Match(line.TrimEnd('\r'));
            if (match.Success)
                yield return (int.Parse(match.Groups[1].Value) & 7, match.Groups[2].Value);
        }
    }

    /// <summary>The priorities of the lines starting with <paramref name="start"/> once there are
    /// <paramref name="count"/> of them (stderr is read asynchronously), or whatever there are after 5 s.</summary>
    private static List<int> AwaitLines(ProxyProcess proxy, string start, int count)
    {
        ProxyProcess.Eventually(() => Priorities(proxy, start).Count >= count, TimeSpan.FromSeconds(5));
        return Priorities(proxy, start);
    }

    private static string Describe(List<int> priorities) => priorities.Count == 0 ? "none" : string.Join(",", priorities);

    // ---- clients ---------------------------------------------------------------------------------------------------

    /// <summary>Sends <paramref name="count"/> bytes and reads as many back (an echo), without a half-close (which
    /// the two proxies treat differently: see <see cref="AHalfCloseIsPassedOnByIoMuxOnly"/>); the count that came
    /// back within 10 s.</summary>
    private static async Task<long> Exchange(Socket client, int count, CancellationToken cancel)
    {
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        bounded.CancelAfter(TimeSpan.FromSeconds(10));
        try
        {
            await TestBackend.SendAll(client, new byte[count], bounded.Token);
            return await TestBackend.ReceiveExactly(client, count, bounded.Token);
        }
        catch (SocketException e)
        {
            return -(int)e.SocketErrorCode;
        }
    }

    private static async Task<string> Ending(Socket client, CancellationToken cancel)
    {
        var (ending, bytes) = await ProxyFaultTests.HowItEnds(client, TimeSpan.FromSeconds(5), cancel);
        return $"{ending} after {bytes} byte(s)";
    }

    // ---- issue 21, rows 1 and 3, and the targets both take --------------------------------------------------------

    /// <summary>Every target form systemd-socket-proxyd 252 accepts relays the same bytes: numeric IPv4, <c>::1:PORT</c>
    /// (systemd splits at the last colon), <c>localhost:PORT</c>, a socket path, and an abstract <c>@name</c>
    /// (row 1: IoMux once read it as a response file, then connected to the path "@name").</summary>
    [TestCase("IPv4"), TestCase("::1:PORT"), TestCase("localhost:PORT"), TestCase("path"), TestCase("@abstract"), CancelAfter(60_000)]
    public async Task EachTargetFormRelaysTheSameBytes(string form, CancellationToken cancel)
    {
        var seen = await Both(async binary =>
        {
            using var backend = form switch
            {
                "::1:PORT" => TestBackend.TcpIPv6(TestBackend.Echo),
                "path" => TestBackend.Unix(TestBackend.Echo),
                "@abstract" => TestBackend.Abstract(TestBackend.Echo),
                _ => TestBackend.Tcp(TestBackend.Echo),
            };
            string target = form == "localhost:PORT" ? backend.Target.Replace("127.0.0.1", "localhost", StringComparison.Ordinal) : backend.Target;
            using var proxy = Activate(binary, null, target);
            using var client = proxy.Connect();
            long echoed = await Exchange(client, 64 * 1024, cancel);
            return $"echoed {echoed}, backend accepted {backend.Accepted}";
        });
        Assert.That(seen.Systemd, Is.EqualTo("echoed 65536, backend accepted 1"), "systemd-socket-proxyd");
        Assert.That(seen.IoMux, Is.EqualTo(seen.Systemd), "iomux-socket-proxyd");
    }

    /// <summary>Row 2: <c>@word</c> is the abstract socket <c>word</c>, never the contents of a file <c>word</c> in
    /// the working directory. The file here names a live backend; nothing listens at the abstract name, so both
    /// close the client and log the failure at error priority, and the backend sees nothing.</summary>
    [Test, CancelAfter(60_000)]
    public async Task AnAtArgumentIsNeverReadFromAFile(CancellationToken cancel)
    {
        using var backend = TestBackend.Tcp(TestBackend.Echo);
        var directory = Directory.CreateTempSubdirectory("iomux-differential-");
        try
        {
            string name = $"iomux-at-{System.Environment.ProcessId}";
            File.WriteAllText(Path.Combine(directory.FullName, name), backend.Target + "\n");
            var seen = await Both(async binary =>
            {
                using var proxy = Activate(binary, directory.FullName, "@" + name);
                using var client = proxy.Connect();
                string ending = await Ending(client, cancel);
                return $"client: {ending}; failed-connect lines at priority {Describe(AwaitLines(proxy, "Failed to connect", 1))}";
            });
            Assert.That(seen.Systemd, Is.EqualTo("client: end of stream after 0 byte(s); failed-connect lines at priority 3"), "systemd-socket-proxyd");
            Assert.That(seen.IoMux, Is.EqualTo(seen.Systemd), "iomux-socket-proxyd");
            Assert.That(backend.Accepted, Is.EqualTo(0), "a target was read from the file");
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    /// <summary>Row 3's exit codes: a bad command line exits 1 in both (System.CommandLine's usual 2 is not kept).</summary>
    [TestCase("--bogus", "127.0.0.1:9")]
    [TestCase("-c", "0", "127.0.0.1:9")]
    [TestCase("--connections-max=x", "127.0.0.1:9")]
    [TestCase("--exit-idle-time=5x", "127.0.0.1:9")]
    [TestCase("127.0.0.1:9", "127.0.0.1:10")]
    [TestCase]
    public void ABadCommandLineExitsOne(params string[] arguments)
    {
        var systemd = ProxyProcess.RunBinaryToExit(SystemdProxy, null, arguments);
        var iomux = ProxyProcess.RunBinaryToExit(ProxyProcess.ProxyPath, null, arguments);
        Assert.That(systemd.ExitCode, Is.EqualTo(1), systemd.Output);
        Assert.That(iomux.ExitCode, Is.EqualTo(systemd.ExitCode), iomux.Output);
    }

    /// <summary>An unknown option without a target is reported as the unknown option (getopt_long reports it first),
    /// not as the missing target or the missing sockets: IoMux once took <c>--bogus</c> for its target and got as far
    /// as "No listening socket was passed".</summary>
    [TestCase("--bogus"), TestCase("-x"), TestCase("--bogus", "-c", "3")]
    public void AnUnknownOptionWithoutATargetIsWhatIsReported(params string[] arguments)
    {
        string observe(int code, string output) =>
            $"exit {code}, names {arguments[0]}: {output.Contains($"'{arguments[0]}'", StringComparison.Ordinal) || output.Contains($"'{arguments[0][1..]}'", StringComparison.Ordinal)}, " +
            $"speaks of sockets or parameters: {output.Contains("listening socket", StringComparison.Ordinal) || output.Contains("sockets passed", StringComparison.Ordinal) || output.Contains("parameters", StringComparison.Ordinal)}";
        var systemd = ProxyProcess.RunBinaryToExit(SystemdProxy, null, arguments);
        var iomux = ProxyProcess.RunBinaryToExit(ProxyProcess.ProxyPath, null, arguments);
        Assert.That(observe(systemd.ExitCode, systemd.Output), Is.EqualTo($"exit 1, names {arguments[0]}: True, speaks of sockets or parameters: False"), systemd.Output);
        Assert.That(observe(iomux.ExitCode, iomux.Output), Is.EqualTo(observe(systemd.ExitCode, systemd.Output)), iomux.Output);
    }

    /// <summary>Several listening sockets (LISTEN_FDS=2): each is relayed, whichever the first client came to.</summary>
    [Test, CancelAfter(60_000)]
    public async Task SeveralListeningSocketsAreEachRelayed(CancellationToken cancel)
    {
        var seen = await Both(async binary =>
        {
            using var backend = TestBackend.Tcp(TestBackend.Echo);
            int second = ProxyProcess.FreePort();
            using var proxy = ProxyProcess.ActivatedBinary(PathOf(binary), Environment(), ["-l", $"127.0.0.1:{second}"], null, backend.Target);
            var echoed = new List<long>();
            foreach (var endpoint in new[] { new IPEndPoint(IPAddress.Loopback, second), proxy.Endpoint })
            {
                using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await client.ConnectAsync(endpoint, cancel).AsTask().WaitAsync(TimeSpan.FromSeconds(5), cancel);
                echoed.Add(await Exchange(client, 1000, cancel));
            }
            return $"echoed {string.Join(" and ", echoed)}; backend accepted {backend.Accepted}";
        });
        Assert.That(seen.Systemd, Is.EqualTo("echoed 1000 and 1000; backend accepted 2"), "systemd-socket-proxyd");
        Assert.That(seen.IoMux, Is.EqualTo(seen.Systemd), "iomux-socket-proxyd");
    }

    /// <summary>A datagram socket passed in is refused at start: exit 1, with a line at error priority.</summary>
    [Test, CancelAfter(60_000)]
    public async Task ADatagramSocketIsRefusedAtStart(CancellationToken cancel)
    {
        var seen = await Both(async binary =>
        {
            using var proxy = ProxyProcess.ActivatedBinary(PathOf(binary), Environment(), ["--datagram"], null, "127.0.0.1:9");
            using (var sender = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp))
                await sender.SendToAsync(new byte[] { 1 }, SocketFlags.None, proxy.Endpoint, cancel); // starts the proxy
            bool exited = proxy.WaitForExit(TimeSpan.FromSeconds(10));
            var errors = PrefixedLines(proxy).Where(line => line.Priority <= 3).ToList();
            return $"exited: {exited}, code {(exited ? proxy.ExitCode : -1)}; lines at error priority: {errors.Count > 0}";
        });
        Assert.That(seen.Systemd, Is.EqualTo("exited: True, code 1; lines at error priority: True"), "systemd-socket-proxyd");
        Assert.That(seen.IoMux, Is.EqualTo(seen.Systemd), "iomux-socket-proxyd");
    }

    // ---- row 4, and row 3's option forms ---------------------------------------------------------------------------

    /// <summary>Row 4 with row 3's forms: <c>-c 5 --connections=1</c> (an abbreviation, and the last of a repeated
    /// option winning) is a limit of 1, which relays two clients (systemd's check is "more than -c open"); the third
    /// is accepted and closed at once, with "Hit connection limit, refusing connection." at warning priority.</summary>
    [Test, CancelAfter(60_000)]
    public async Task PastTheLimitAClientIsRefusedAlike(CancellationToken cancel)
    {
        var seen = await Both(async binary =>
        {
            using var backend = TestBackend.Tcp(TestBackend.Echo);
            using var proxy = Activate(binary, null, "-c", "5", "--connections=1", backend.Target);
            using var first = proxy.Connect();
            long one = await Exchange(first, 1000, cancel);
            using var second = proxy.Connect();
            long two = await Exchange(second, 1000, cancel);
            using var third = proxy.Connect();
            string ending = await Ending(third, cancel);
            return $"echoed {one} and {two}; third: {ending}; limit lines at priority {Describe(AwaitLines(proxy, "Hit connection limit, refusing connection.", 1))}; " +
                $"backend accepted {backend.Accepted}";
        });
        Assert.That(seen.Systemd, Is.EqualTo("echoed 1000 and 1000; third: end of stream after 0 byte(s); limit lines at priority 4; backend accepted 2"), "systemd-socket-proxyd");
        Assert.That(seen.IoMux, Is.EqualTo(seen.Systemd), "iomux-socket-proxyd");
    }

    // ---- row 5: SIGTERM --------------------------------------------------------------------------------------------

    /// <summary>Row 5: SIGTERM with a connection open ends both at once (systemd installs no handler and dies by the
    /// signal; IoMux closes its connections and exits unless --drain-time is given); the client sees end of stream.
    /// The exit status is the one intended difference: systemd's is "killed by SIGTERM" (143 here), IoMux's 0; both
    /// are a clean stop to systemd (SuccessExitStatus= counts SIGTERM by default).</summary>
    [Test, CancelAfter(60_000)]
    public async Task SigtermEndsBothAtOnce(CancellationToken cancel)
    {
        var seen = await Both(async binary =>
        {
            using var backend = TestBackend.Tcp(TestBackend.Echo);
            using var proxy = Activate(binary, null, backend.Target);
            using var client = proxy.Connect();
            long echoed = await Exchange(client, 1000, cancel);
            var clock = Stopwatch.StartNew();
            proxy.Signal(ProxyProcess.SIGTERM);
            bool exited = proxy.WaitForExit(TimeSpan.FromSeconds(5));
            var took = clock.Elapsed;
            string ending = await Ending(client, cancel);
            return (Seen: $"echoed {echoed}; exited within 5 s: {exited}; client: {ending}", Took: took, Code: exited ? proxy.ExitCode : -1);
        });
        Assert.That(seen.Systemd.Seen, Is.EqualTo("echoed 1000; exited within 5 s: True; client: end of stream after 0 byte(s)"), "systemd-socket-proxyd");
        Assert.That(seen.IoMux.Seen, Is.EqualTo(seen.Systemd.Seen), "iomux-socket-proxyd");
        Assert.That(seen.Systemd.Took, Is.LessThan(TimeSpan.FromSeconds(1)), "systemd-socket-proxyd's time to exit");
        Assert.That(seen.IoMux.Took, Is.LessThan(TimeSpan.FromSeconds(1)), "iomux-socket-proxyd's time to exit (systemd's: " + seen.Systemd.Took + ")");
        Assert.That(seen.Systemd.Code, Is.EqualTo(128 + ProxyProcess.SIGTERM), "systemd-socket-proxyd dies by SIGTERM");
        Assert.That(seen.IoMux.Code, Is.EqualTo(0), "iomux-socket-proxyd exits 0 (documented difference)");
    }

    // ---- row 6: failed backend connects ----------------------------------------------------------------------------

    /// <summary>Row 6, and the refusing backend both handle alike: each client is closed (end of stream) and each
    /// failed connect is a line at error priority, so that <c>journalctl -p err</c> shows every one.</summary>
    [Test, CancelAfter(60_000)]
    public async Task EachFailedBackendConnectIsLoggedAtErrorPriority(CancellationToken cancel)
    {
        var seen = await Both(async binary =>
        {
            using var proxy = Activate(binary, null, $"127.0.0.1:{ProxyProcess.FreePort()}"); // nothing listens: refused
            var endings = new List<string>();
            for (int i = 0; i < 3; i++)
            {
                using var client = proxy.Connect();
                endings.Add(await Ending(client, cancel));
            }
            return $"clients: {string.Join("; ", endings)}; failed-connect lines at priority {Describe(AwaitLines(proxy, "Failed to connect", 3))}";
        });
        Assert.That(seen.Systemd, Is.EqualTo("clients: end of stream after 0 byte(s); end of stream after 0 byte(s); end of stream after 0 byte(s); failed-connect lines at priority 3,3,3"), "systemd-socket-proxyd");
        Assert.That(seen.IoMux, Is.EqualTo(seen.Systemd), "iomux-socket-proxyd");
    }

    /// <summary>Row 6's documented difference: systemd logs every failure however many there are; IoMux logs at most
    /// 10 a second and counts the rest in one more line at error priority when the second ends ("N more failure(s)
    /// in the last second not logged"), so that every failure is accounted for.</summary>
    [Test, CancelAfter(60_000)]
    public async Task ABurstOfFailedConnectsIsRateLimitedByIoMuxOnly(CancellationToken cancel)
    {
        const int burst = 30;
        var seen = await Both(async binary =>
        {
            using var proxy = Activate(binary, null, $"127.0.0.1:{ProxyProcess.FreePort()}");
            using (var first = proxy.Connect())
                await Ending(first, cancel); // the proxy is running
            var clients = Enumerable.Range(0, burst).Select(_ => proxy.Connect()).ToList();
            try
            {
                await Task.WhenAll(clients.Select(client => Ending(client, cancel)));
            }
            finally
            {
                clients.ForEach(client => client.Dispose());
            }
            // Every failure is a line of its own or counted in a "not logged" line (at error priority too).
            (int Individual, long Suppressed, bool AllErrors) count()
            {
                var matches = SuppressedCounts().Matches(proxy.Log);
                var lines = Priorities(proxy, "Failed to connect");
                return (lines.Count - matches.Count, matches.Sum(m => long.Parse(m.Groups[1].Value)), lines.All(p => p == 3));
            }
            ProxyProcess.Eventually(() => count().Individual + count().Suppressed >= burst + 1, TimeSpan.FromSeconds(5));
            return count();
        });
        Assert.That(seen.Systemd, Is.EqualTo((burst + 1, 0L, true)), "systemd-socket-proxyd logs each failure");
        Assert.That(seen.IoMux.Individual + seen.IoMux.Suppressed, Is.EqualTo(burst + 1), "iomux-socket-proxyd accounts for each failure");
        Assert.That(seen.IoMux.Suppressed, Is.GreaterThan(0), "iomux-socket-proxyd did not limit the burst");
        Assert.That(seen.IoMux.AllErrors, Is.True, "iomux-socket-proxyd's lines are at error priority");
    }

    [GeneratedRegex(@"(\d+) more failure\(s\) in the last second not logged")]
    private static partial Regex SuppressedCounts();

    // ---- row 7 and the idle exit both share ------------------------------------------------------------------------

    private const int F_SETFD = 2, FD_CLOEXEC = 1;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(int fd, int command, int argument);

    /// <summary>Starts <paramref name="binary"/> as a service manager does for a unit started without a client
    /// waiting (<c>systemctl start</c> of the service, or a socket unit whose first client went away): the listening
    /// socket is fd 3 with LISTEN_FDS=1 and LISTEN_PID the proxy's, and nothing in its backlog. systemd-socket-activate
    /// cannot do that (it execs on the first connection), so bash (dash takes no descriptor past 9) moves this test's listener to fd 3 and execs.</summary>
    private static ProxyProcess StartWithoutAClient(Binary binary, Socket listener, params string[] arguments)
    {
        int fd = (int)listener.SafeHandle.DangerousGetHandle();
        // Inheritable for this one child only (the fixture is not run in parallel with another that starts processes).
        Assert.That(fcntl(fd, F_SETFD, 0), Is.EqualTo(0));
        try
        {
            return ProxyProcess.Started("/bin/bash",
                ["-c", $"exec 3<&{fd} {fd}<&-; LISTEN_FDS=1 LISTEN_PID=$$ exec \"$0\" \"$@\"", PathOf(binary), .. arguments],
                Environment(), (IPEndPoint)listener.LocalEndPoint!);
        }
        finally
        {
            fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
    }

    /// <summary>Row 7: <c>--exit-idle-time</c> counts from the end of the first connection, so a proxy started with no
    /// client never exits by it (IoMux once exited after the idle time); once a connection has come and gone, both
    /// exit after the idle time with 0 (the timing and exit both share).</summary>
    [Test, CancelAfter(60_000)]
    public async Task TheIdleTimeCountsFromTheFirstConnection(CancellationToken cancel)
    {
        var seen = await Both(async binary =>
        {
            using var backend = TestBackend.Tcp(TestBackend.Echo);
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(16);
            using var proxy = StartWithoutAClient(binary, listener, "--exit-idle-time=1s", backend.Target);
            listener.Close(); // the proxy holds its copy
            await Task.Delay(2500, cancel); // well past the idle time, no client
            bool runningWithoutAClient = !proxy.HasExited;
            Assert.That(runningWithoutAClient, Is.True, $"{binary} exited with no client: {proxy.Log}");
            long echoed;
            using (var client = proxy.Connect())
                echoed = await Exchange(client, 1000, cancel);
            var clock = Stopwatch.StartNew();
            bool exited = proxy.WaitForExit(TimeSpan.FromSeconds(10));
            var took = clock.Elapsed;
            return (Seen: $"running with no client after 2.5 s: {runningWithoutAClient}; echoed {echoed}; exited after it: {exited}, code {(exited ? proxy.ExitCode : -1)}",
                Took: took, proxy.Log);
        });
        Assert.That(seen.Systemd.Seen, Is.EqualTo("running with no client after 2.5 s: True; echoed 1000; exited after it: True, code 0"), "systemd-socket-proxyd: " + seen.Systemd.Log);
        Assert.That(seen.IoMux.Seen, Is.EqualTo(seen.Systemd.Seen), "iomux-socket-proxyd: " + seen.IoMux.Log);
        foreach (var (name, took) in new[] { ("systemd-socket-proxyd", seen.Systemd.Took), ("iomux-socket-proxyd", seen.IoMux.Took) })
            Assert.That(took, Is.InRange(TimeSpan.FromMilliseconds(700), TimeSpan.FromSeconds(3)), $"{name}: time from the last connection's end to the exit");
    }

    // ---- where IoMux differs on purpose ----------------------------------------------------------------------------

    /// <summary>A backend that replies after the client's end of stream (a half-close): IoMux passes the half-close on
    /// and relays the reply; systemd ends the connection when the client's side ends and the reply is lost.</summary>
    [Test, CancelAfter(60_000)]
    public async Task AHalfCloseIsPassedOnByIoMuxOnly(CancellationToken cancel)
    {
        var seen = await Both(async binary =>
        {
            using var backend = TestBackend.Tcp(ReplyAfterEndOfStream);
            using var proxy = Activate(binary, null, backend.Target);
            using var client = proxy.Connect();
            await TestBackend.SendAll(client, "ping"u8.ToArray(), cancel);
            client.Shutdown(SocketShutdown.Send);
            return await Ending(client, cancel);
        });
        Assert.That(seen.Systemd, Is.EqualTo("end of stream after 0 byte(s)"), "systemd-socket-proxyd loses the reply");
        Assert.That(seen.IoMux, Is.EqualTo("end of stream after 4 byte(s)"), "iomux-socket-proxyd relays it");
    }

    private static async Task ReplyAfterEndOfStream(Socket socket)
    {
        var buffer = new byte[64];
        while (await socket.ReceiveAsync(buffer, SocketFlags.None) > 0)
        {
        }
        await TestBackend.SendAll(socket, "pong"u8.ToArray());
        socket.Shutdown(SocketShutdown.Send);
    }

    /// <summary>sd_notify under <c>Type=notify</c> with <c>WatchdogSec=</c>: both ping the watchdog (WATCHDOG=1); IoMux
    /// also says READY=1 (with a STATUS=) once relaying and STOPPING=1 on SIGTERM, which systemd-socket-proxyd 252 does
    /// not (a unit swapping in IoMux may say Type=notify; one written for systemd's can only say Type=simple).</summary>
    [Test, CancelAfter(60_000)]
    public async Task BothPingTheWatchdogAndIoMuxAlsoSaysReadyAndStopping(CancellationToken cancel)
    {
        var seen = await Both(async binary =>
        {
            using var manager = IoMux.Tests.Systemd.NotifySocket.Abstract();
            using var backend = TestBackend.Tcp(TestBackend.Echo);
            var environment = Environment();
            environment["NOTIFY_SOCKET"] = manager.Address;
            environment["WATCHDOG_USEC"] = "400000";
            using var proxy = ProxyProcess.ActivatedBinary(PathOf(binary), environment, [], null, backend.Target);
            using (var client = proxy.Connect())
                Assert.That(await Exchange(client, 1000, cancel), Is.EqualTo(1000));
            var messages = manager.ReceiveFor(TimeSpan.FromSeconds(1));
            proxy.Signal(ProxyProcess.SIGTERM);
            Assert.That(proxy.WaitForExit(TimeSpan.FromSeconds(5)), Is.True, $"{binary} did not stop");
            messages.AddRange(manager.ReceiveFor(TimeSpan.FromMilliseconds(300)));
            // The kinds of message, in the order each first came (STATUS= rides along with READY=1 and STOPPING=1).
            return string.Join(" ", messages.Select(m => m.Text.Split('\n')[0]).Distinct());
        });
        Assert.That(seen.Systemd, Is.EqualTo("WATCHDOG=1"), "systemd-socket-proxyd 252");
        Assert.That(seen.IoMux, Is.EqualTo("READY=1 WATCHDOG=1 STOPPING=1"), "iomux-socket-proxyd");
    }

    /// <summary>A backend that resets the connection: IoMux passes the reset on to the client; systemd closes the
    /// client's side normally, so that the client cannot tell a reset from an answer that ended.</summary>
    [Test, CancelAfter(60_000)]
    public async Task ABackendResetIsPassedOnByIoMuxOnly(CancellationToken cancel)
    {
        var seen = await Both(async binary =>
        {
            using var backend = TestBackend.Tcp(ResetAfterOneByte);
            using var proxy = Activate(binary, null, backend.Target);
            using var client = proxy.Connect();
            await TestBackend.SendAll(client, new byte[] { 1 }, cancel);
            return await Ending(client, cancel);
        });
        Assert.That(seen.Systemd, Is.EqualTo("end of stream after 0 byte(s)"), "systemd-socket-proxyd");
        Assert.That(seen.IoMux, Is.EqualTo("ConnectionReset after 0 byte(s)"), "iomux-socket-proxyd");
    }

    private static async Task ResetAfterOneByte(Socket socket)
    {
        await socket.ReceiveAsync(new byte[1], SocketFlags.None);
        socket.LingerState = new LingerOption(true, 0); // close(2) then sends a reset
        socket.Close();
    }
}
