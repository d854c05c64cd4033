using IoMux.SocketProxy;

namespace IoMux.Tests.Proxy;

/// <summary>iomux-socket-proxyd reads the usual command line itself (ProxyCommand.TryReadCommon) and leaves the rest
/// to System.CommandLine: whatever the fast reader accepts, System.CommandLine must read the same way, and what
/// it refuses must still get System.CommandLine's messages (CommandErrorTests run the binary on those).</summary>
public sealed class ProxyCommandFastPathTests
{
    /// <summary>What System.CommandLine makes of <paramref name="args"/>: the options and listen addresses, or the
    /// parse errors.</summary>
    private static (ProxyOptions? Options, IReadOnlyList<string>? Listen, string Errors) Full(string[] args)
    {
        ProxyOptions? options = null;
        IReadOnlyList<string>? listen = null;
        var root = UnixCommand.Root(ProxyCommand.ProgramName, "test");
        ProxyCommand.Configure(root, (o, l) =>
        {
            options = o;
            listen = l;
            return 0;
        });
        var result = root.Parse(args);
        if (result.Errors.Count > 0)
            return (null, null, string.Join("; ", result.Errors.Select(e => e.Message)));
        result.Invoke();
        return (options, listen, "");
    }

    private static string Describe(ProxyOptions o, IReadOnlyList<string> listen) =>
        $"{o.Target.Text} c={o.ConnectionsMax} idle={o.ExitIdleTime} drain={o.DrainTime} connect={o.ConnectTimeout} " +
        $"copy={o.CopyMode} listen=[{string.Join(",", listen)}]";

    [TestCase("127.0.0.1:8080")]
    [TestCase("/run/app.sock")]
    [TestCase("[::1]:80")]
    [TestCase("localhost:80")]
    [TestCase("--connections-max", "10", "127.0.0.1:8080")]
    [TestCase("-c", "+7", "127.0.0.1:8080")]
    [TestCase("--connections-max=2147483647", "127.0.0.1:8080")]
    [TestCase("--exit-idle-time=5min", "127.0.0.1:8080")]
    [TestCase("127.0.0.1:8080", "--exit-idle-time", "1h 30min")]
    [TestCase("--exit-idle-time", "infinity", "127.0.0.1:8080")]
    [TestCase("--drain-time", "0", "--connect-timeout", "2s", "127.0.0.1:8080")]
    [TestCase("--drain-time=infinity", "--connect-timeout=10000y", "127.0.0.1:8080")]
    [TestCase("--copy", "buffer", "127.0.0.1:8080")]
    [TestCase("--copy=SPLICE", "127.0.0.1:8080")]
    [TestCase("--listen", "127.0.0.1:9", "127.0.0.1:8080")]
    [TestCase("--listen", "127.0.0.1:9", "--listen=/tmp/x.sock", "127.0.0.1:8080")]
    [TestCase("--verbose", "127.0.0.1:8080")]
    [TestCase("127.0.0.1:8080", "--verbose")]
    public void TheUsualLinesAreReadAsSystemCommandLineReadsThem(params string[] args)
    {
        Assert.That(ProxyCommand.TryReadCommon(args, out var fast, out var fastListen), Is.True, "not on the fast path");
        var (full, fullListen, errors) = Full(args);
        Assert.That(errors, Is.Empty);
        Assert.That(Describe(fast!, fastListen), Is.EqualTo(Describe(full!, fullListen!)));
    }

    [TestCase]
    [TestCase("--help")]
    [TestCase("-h")]
    [TestCase("-?")]
    [TestCase("--version")]
    [TestCase("--bogus", "127.0.0.1:8080")]
    [TestCase("127.0.0.1:8080", "127.0.0.1:8081")]
    [TestCase("no-port-here")]
    [TestCase("-c", "0", "127.0.0.1:8080")]
    [TestCase("-c", "x", "127.0.0.1:8080")]
    [TestCase("-c", "99999999999", "127.0.0.1:8080")]
    [TestCase("-c5", "127.0.0.1:8080")]
    [TestCase("-c=5", "127.0.0.1:8080")]
    [TestCase("-c", "5", "-c", "6", "127.0.0.1:8080")]
    [TestCase("-c", "5", "--connections-max", "6", "127.0.0.1:8080")]
    [TestCase("--connections-max:5", "127.0.0.1:8080")]
    [TestCase("--connections-max", "127.0.0.1:8080")]
    [TestCase("127.0.0.1:8080", "--connections-max")]
    [TestCase("--connections-max=", "127.0.0.1:8080")]
    [TestCase("--exit-idle-time", "5x", "127.0.0.1:8080")]
    [TestCase("--drain-time", "-1s", "127.0.0.1:8080")]
    [TestCase("--copy", "pipe", "127.0.0.1:8080")]
    [TestCase("--listen", "localhost:80", "127.0.0.1:8080")]
    [TestCase("--listen", "127.0.0.1:9", "127.0.0.1:1", "127.0.0.1:8080")]
    [TestCase("--verbose", "true", "127.0.0.1:8080")]
    [TestCase("--verbose", "--verbose", "127.0.0.1:8080")]
    [TestCase("--verbose=true", "127.0.0.1:8080")]
    [TestCase("--", "127.0.0.1:8080")]
    [TestCase("@args.rsp")]
    [TestCase("@abstract")]
    [TestCase("")]
    [TestCase("-")]
    public void EverythingElseIsLeftToSystemCommandLine(params string[] args)
    {
        Assert.That(ProxyCommand.TryReadCommon(args, out _, out _), Is.False);
    }
}
