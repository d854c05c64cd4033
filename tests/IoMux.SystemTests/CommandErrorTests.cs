using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using IoMux.Tests.Proxy;

namespace IoMux.Tests;

/// <summary>The bad-input table of issue 14: <c>iomux</c> and <c>iomux-socket-proxyd</c> run as processes on every
/// expected failure must answer like Unix tools: exactly one line on stderr naming the cause (and the errno name
/// where there is one), no stack trace, exit 2 for usage errors and 1 for runtime ones (docs/SERVERS.md, "Exit
/// codes and errors"; docs/PROXY.md, "Exit codes").</summary>
[Category("System")]
public sealed partial class CommandErrorTests
{
    private const string Iomux = "IoMux.Cli", Proxy = "iomux-socket-proxyd";

    /// <summary>One row: the program, its arguments (placeholders: {dir} a directory, {file} a regular file,
    /// {missing} a path that does not exist, {busy} a port something listens on), IOMUX_BACKEND (null: unset),
    /// the exit code and the line stderr must hold.</summary>
    public sealed record Case(string Program, string[] Arguments, string? Backend, int ExitCode, string Line)
    {
        public override string ToString() => $"{(Backend is null ? "" : $"IOMUX_BACKEND={Backend} ")}{(Program == Iomux ? "iomux" : Program)} {string.Join(' ', Arguments)}";
    }

    public static IEnumerable<Case> Table() =>
    [
        // Usage errors: 2.
        new(Iomux, ["serve", "-p", "99999", "{dir}"], null, 2, "iomux: --port 99999: not a port (1-65535) (see iomux serve --help)"),
        new(Iomux, ["hello", "--port", "0"], null, 2, "iomux: --port 0: not a port (1-65535) (see iomux hello --help)"),
        new(Iomux, ["echo", "-p", "http"], null, 2, "iomux: --port http: not a port (1-65535) (see iomux echo --help)"),
        new(Iomux, ["serve", "-t", "-5", "{dir}"], null, 2, "iomux: --threads -5: not a thread count (at least 1) (see iomux serve --help)"),
        new(Iomux, ["hello", "-t", "0"], null, 2, "iomux: --threads 0: not a thread count (at least 1) (see iomux hello --help)"),
        new(Iomux, ["serve", "{file}"], null, 2, "iomux: DIR '{file}': not a directory (ENOTDIR) (see iomux serve --help)"),
        new(Iomux, ["serve", "{missing}"], null, 2, "iomux: DIR '{missing}': no such file or directory (ENOENT) (see iomux serve --help)"),
        new(Iomux, ["serve"], null, 2, "iomux: Required argument missing for command: 'serve' (see iomux serve --help)"),
        new(Iomux, ["hello", "-a", "localhost"], null, 2, "iomux: --address: 'localhost' is not an IP address (see iomux hello --help)"),
        new(Iomux, ["hello", "--bogus"], null, 2, "iomux: Unrecognized command or argument '--bogus' (see iomux hello --help)"),
        new(Iomux, ["check", "--backend", "iocp"], null, 2, "iomux: --backend iocp: unknown backend; known: "),
        new(Iomux, ["check", "--scenario", "Z99"], null, 2, "iomux: --scenario Z99: unknown scenario (the ids are in docs/SEMANTICS.md) (see iomux check --help)"),
        new(Iomux, ["serve", "{dir}", "-p", "{busy}"], "nope", 2, "iomux: Unknown IOMUX_BACKEND=nope. Available here: "),
        new(Iomux, ["hello", "-p", "{busy}"], "nope", 2, "iomux: Unknown IOMUX_BACKEND=nope. Available here: "),
        new(Iomux, ["echo", "-p", "{busy}"], "nope", 2, "iomux: Unknown IOMUX_BACKEND=nope. Available here: "),
        new(Iomux, ["proxy", "--listen", "127.0.0.1:{busy}", "127.0.0.1:9"], "nope", 2, "iomux: Unknown IOMUX_BACKEND=nope. Available here: "),
        // iomux-socket-proxyd exits 1 on every failure, as systemd-socket-proxyd (issue 21).
        new(Proxy, ["--listen", "127.0.0.1:{busy}", "127.0.0.1:9"], "nope", 1, "iomux-socket-proxyd: Unknown IOMUX_BACKEND=nope. Available here: "),
        new(Proxy, ["--exit-idle-time", "5x", "127.0.0.1:9"], null, 1, "iomux-socket-proxyd: --exit-idle-time: '5x' is not a time span (EINVAL)"),
        new(Proxy, ["--drain-time", "-1s", "127.0.0.1:9"], null, 1, "iomux-socket-proxyd: --drain-time: '-1s' is out of range (ERANGE)"),
        new(Proxy, ["-c", "0", "127.0.0.1:9"], null, 1, "iomux-socket-proxyd: --connections-max 0: not a connection count (at least 1) (see iomux-socket-proxyd --help)"),
        new(Proxy, ["host:no-such-service"], null, 1, "iomux-socket-proxyd: 'host:no-such-service': 'no-such-service' is neither a port (1-65535) nor a TCP service in the services database (see iomux-socket-proxyd --help)"),
        new(Proxy, ["--bogus", "127.0.0.1:9"], null, 1, "iomux-socket-proxyd: Unrecognized command or argument '--bogus'"),
        new(Proxy, ["-x", "127.0.0.1:9"], null, 1, "iomux-socket-proxyd: Unrecognized command or argument '-x'"),
        new(Proxy, ["--listen", "localhost:80", "127.0.0.1:9"], null, 1, "iomux-socket-proxyd: --listen localhost:80: give a numeric address"),
        new(Iomux, ["proxy", "--copy", "pipe", "127.0.0.1:9"], null, 2, "iomux: --copy: 'pipe' is neither splice nor buffer (see iomux proxy --help)"),
        // An unknown option where the target should be is reported as such (System.CommandLine took it for the target).
        new(Iomux, ["proxy", "--bogus"], null, 2, "iomux: Unrecognized command or argument '--bogus' (see iomux proxy --help)"),
        new(Iomux, ["proxy", "-x"], null, 2, "iomux: Unrecognized command or argument '-x' (see iomux proxy --help)"),
        // Runtime errors: 1.
        new(Iomux, ["hello", "-p", "{busy}"], null, 1, "iomux: cannot listen on 127.0.0.1:{busy}: address in use (EADDRINUSE)"),
        new(Iomux, ["echo", "-p", "{busy}"], null, 1, "iomux: cannot listen on 127.0.0.1:{busy}: address in use (EADDRINUSE)"),
        new(Iomux, ["serve", "{dir}", "-p", "{busy}"], null, 1, "iomux: cannot listen on 127.0.0.1:{busy}: address in use (EADDRINUSE)"),
        new(Iomux, ["hello", "-a", "192.0.2.1"], null, 1, "iomux: cannot listen on 192.0.2.1:8080: address not available on this host (EADDRNOTAVAIL)"),
        new(Proxy, ["--listen", "127.0.0.1:{busy}", "127.0.0.1:9"], null, 1, "iomux-socket-proxyd: cannot listen on 127.0.0.1:{busy}: address in use (EADDRINUSE)"),
        new(Proxy, ["--listen", "{missing}/proxy.sock", "127.0.0.1:9"], null, 1, "iomux-socket-proxyd: cannot listen on {missing}/proxy.sock: no such file or directory (ENOENT)"),
        new(Proxy, ["127.0.0.1:9"], null, 1, "iomux-socket-proxyd: No listening socket was passed (LISTEN_FDS is not set)."),
    ];

    private string _directory = null!;
    private Socket _busy = null!;

    [OneTimeSetUp]
    public void MakeTheFixtures()
    {
        _directory = Directory.CreateTempSubdirectory("iomux-errors-").FullName;
        File.WriteAllText(Path.Combine(_directory, "file.txt"), "not a directory");
        _busy = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _busy.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _busy.Listen(); // a listener without SO_REUSEPORT, as nginx or another program would hold the port
    }

    [OneTimeTearDown]
    public void RemoveTheFixtures()
    {
        _busy.Dispose();
        Directory.Delete(_directory, recursive: true);
        if (_forNobody is not null)
            Directory.Delete(_forNobody, recursive: true);
    }

    private string? _forNobody;

    /// <summary>A copy of the binaries that user nobody can reach: the build output may sit below a directory only
    /// its owner may enter (a clone made in `mktemp -d`, mode 0700), and then nobody cannot even start the program
    /// ("Failed to resolve full path of the current executable").</summary>
    private string BinariesForNobody()
    {
        if (_forNobody is not null)
            return _forNobody;
        var copy = Path.Combine(Path.GetTempPath(), $"iomux-as-nobody-{Environment.ProcessId}");
        foreach (var file in Directory.EnumerateFiles(AppContext.BaseDirectory, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(copy, Path.GetRelativePath(AppContext.BaseDirectory, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite: true);
        }
        const UnixFileMode ReadAndEnter = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
            | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
        foreach (var directory in Directory.EnumerateDirectories(copy, "*", SearchOption.AllDirectories).Append(copy))
            File.SetUnixFileMode(directory, ReadAndEnter);
        foreach (var program in new[] { Iomux, Proxy })
            File.SetUnixFileMode(Path.Combine(copy, program), ReadAndEnter);
        return _forNobody = copy;
    }

    private string Expand(string text) => text
        .Replace("{dir}", _directory)
        .Replace("{file}", Path.Combine(_directory, "file.txt"))
        .Replace("{missing}", Path.Combine(_directory, "missing"))
        .Replace("{busy}", ((IPEndPoint)_busy.LocalEndPoint!).Port.ToString());

    [TestCaseSource(nameof(Table))]
    public void AnExpectedFailureIsOneLineAndItsExitCode(Case row)
    {
        var environment = new Dictionary<string, string?> { [BackendSelector.EnvironmentVariable] = row.Backend };
        var result = CommandProcess.Run(Path.Combine(AppContext.BaseDirectory, row.Program), row.Arguments.Select(Expand), environment);
        result.AssertOneLine(row.ExitCode, Expand(row.Line));
    }

    /// <summary>Permission denied: a port below 1024 for a user without CAP_NET_BIND_SERVICE (the tests run as
    /// root here, so the command runs as nobody through setpriv), a Unix socket in a directory that user cannot
    /// write, and a directory to serve that user cannot open (the fixture's directory is mode 0700, root's).</summary>
    [TestCase(Iomux, new[] { "hello", "-p", "80" }, 1, "iomux: cannot listen on 127.0.0.1:80: permission denied (EACCES)")]
    [TestCase(Proxy, new[] { "--listen", "{dir}/proxy.sock", "127.0.0.1:9" }, 1, "iomux-socket-proxyd: cannot listen on {dir}/proxy.sock: permission denied (EACCES)")]
    [TestCase(Iomux, new[] { "serve", "{dir}", "-p", "18080" }, 2, "iomux: DIR '{dir}': permission denied (EACCES) (see iomux serve --help)")]
    public void PermissionDeniedIsOneLine(string program, string[] arguments, int exitCode, string line)
    {
        if (arguments.Contains("80") && File.ReadAllText("/proc/sys/net/ipv4/ip_unprivileged_port_start").Trim() is var start && int.Parse(start) <= 80)
            Assert.Ignore($"net.ipv4.ip_unprivileged_port_start={start}: every user may bind port 80 here");
        if (geteuid() != 0 && arguments.Any(a => a.Contains("{dir}")))
            Assert.Ignore("the fixture's directory is this user's own: only root can run the command as a user it shuts out");
        var command = geteuid() == 0
            ? CommandProcess.Run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Path.Combine(BinariesForNobody(), program), .. arguments.Select(Expand)], null)
            : CommandProcess.Run(Path.Combine(AppContext.BaseDirectory, program), arguments.Select(Expand), null);
        command.AssertOneLine(exitCode, Expand(line));
    }

    /// <summary>--verbose adds the exception and its stack trace after the same first line.</summary>
    [Test]
    public void VerboseAddsTheStackTraceAfterTheLine()
    {
        var result = CommandProcess.Run(Path.Combine(AppContext.BaseDirectory, Iomux), ["hello", "-p", Expand("{busy}"), "--verbose"], null);
        Assert.That(result.ExitCode, Is.EqualTo(1), result.Stderr);
        var lines = result.StderrLines;
        Assert.That(lines[0], Is.EqualTo(Expand("iomux: cannot listen on 127.0.0.1:{busy}: address in use (EADDRINUSE)")));
        Assert.That(lines.Skip(1).Any(l => l.StartsWith("   at ", StringComparison.Ordinal)), Is.True, result.Stderr);
        Assert.That(result.Stderr, Does.Contain("PosixException"));
    }

    /// <summary>A second server on the port of a running one is refused, rather than joining its SO_REUSEPORT group
    /// and taking a share of its connections; the first goes on serving and stops cleanly.</summary>
    [Test, CancelAfter(60_000)]
    public async Task ASecondInstanceOnTheSamePortExitsOneWithAddressInUse(CancellationToken token)
    {
        await Web.ServerCommandTests.Run(["hello"], async port =>
        {
            foreach (var second in new[] { new[] { "hello" }, ["echo"], ["serve", _directory] })
            {
                var result = CommandProcess.Run(Path.Combine(AppContext.BaseDirectory, Iomux), [.. second, "-p", port.ToString(), "-t", "2"], null);
                result.AssertOneLine(1, $"iomux: cannot listen on 127.0.0.1:{port}: address in use (EADDRINUSE)");
            }
            // Every connection still reaches the first instance.
            using var http = new HttpClient();
            for (int i = 0; i < 20; i++)
                Assert.That(await http.GetStringAsync($"http://127.0.0.1:{port}/", token), Is.EqualTo("Hello, World!"));
        });
    }

    /// <summary>Under the journal the line carries the error priority instead of the program's name, as the
    /// proxy's other lines and systemd's own tools' do.</summary>
    [Test]
    public void UnderTheJournalTheLineCarriesTheErrorPriority()
    {
        var result = CommandProcess.Run(Path.Combine(AppContext.BaseDirectory, Proxy), ["-c", "0", "127.0.0.1:9"],
            new Dictionary<string, string?> { ["JOURNAL_STREAM"] = "8:12345" });
        result.AssertOneLine(1, "<3>--connections-max 0: not a connection count (at least 1)");
    }

    /// <summary>No argument of either command is read from a file (issue 21): with response files on,
    /// System.CommandLine took <c>@word</c> for the contents of the file <c>word</c> in the working directory, so the
    /// files here (each holding --help, or a directory to serve) would have given help and exit 0 or a served
    /// directory. The proxy's own reader (iomux-socket-proxyd) and System.CommandLine (iomux proxy, iomux serve) are
    /// both run.</summary>
    [TestCase(Proxy, new[] { "@word" }, 1, "iomux-socket-proxyd: No listening socket was passed (LISTEN_FDS is not set).")]
    [TestCase(Proxy, new[] { "-c", "5", "@word" }, 1, "iomux-socket-proxyd: No listening socket was passed (LISTEN_FDS is not set).")]
    [TestCase(Iomux, new[] { "proxy", "@word" }, 1, "iomux-socket-proxyd: No listening socket was passed (LISTEN_FDS is not set).")]
    [TestCase(Iomux, new[] { "serve", "@dir", "-p", "{busy}" }, 2, "iomux: DIR '@dir': no such file or directory (ENOENT)")]
    public void AnArgumentIsNeverReadFromAFile(string program, string[] arguments, int exitCode, string line)
    {
        var cwd = Directory.CreateTempSubdirectory("iomux-atfile-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(cwd, "word"), "--help\n");
            File.WriteAllText(Path.Combine(cwd, "dir"), _directory + "\n");
            var result = CommandProcess.Run(Path.Combine(AppContext.BaseDirectory, program), arguments.Select(Expand), null, cwd);
            result.AssertOneLine(exitCode, Expand(line));
        }
        finally
        {
            Directory.Delete(cwd, recursive: true);
        }
    }

    [Test]
    public void HelpNamesTheProgramIomux()
    {
        var result = CommandProcess.Run(Path.Combine(AppContext.BaseDirectory, Iomux), ["serve", "--help"], null);
        Assert.That(result.ExitCode, Is.EqualTo(0));
        Assert.That(result.Stdout, Does.Contain("Usage:").And.Contain("  iomux serve <DIR> [options]").And.Not.Contain("IoMux.Cli"));
        Assert.That(result.Stdout, Does.Contain("--verbose"));
    }

    [LibraryImport("libc")]
    private static partial uint geteuid();
}

/// <summary>A command run to its end with stdout and stderr apart.</summary>
internal sealed record CommandProcess(int ExitCode, string Stdout, string Stderr)
{
    public string[] StderrLines => Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>Runs <paramref name="program"/>; <paramref name="environment"/> values of null unset a variable.</summary>
    public static CommandProcess Run(string program, IEnumerable<string> arguments, IDictionary<string, string?>? environment,
        string? workingDirectory = null)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (workingDirectory is not null)
            start.WorkingDirectory = workingDirectory;
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        start.Environment.Remove("JOURNAL_STREAM"); // the lines are compared without the journal's <N> prefix
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null)
                start.Environment.Remove(name);
            else
                start.Environment[name] = value;
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(30_000))
        {
            process.Kill();
            Assert.Fail($"{program} {string.Join(' ', start.ArgumentList)} did not exit within 30 s");
        }
        return new CommandProcess(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Exit code <paramref name="exitCode"/>, exactly one line on stderr starting with
    /// <paramref name="line"/>, no stack frame, nothing on stdout.</summary>
    public void AssertOneLine(int exitCode, string line)
    {
        Assert.Multiple(() =>
        {
            Assert.That(ExitCode, Is.EqualTo(exitCode), Stderr);
            Assert.That(StderrLines, Has.Length.EqualTo(1), Stderr);
            Assert.That(StderrLines.FirstOrDefault(), Does.StartWith(line));
            Assert.That(Stderr, Does.Not.Contain("   at "));
            Assert.That(Stdout, Is.Empty);
        });
    }
}
