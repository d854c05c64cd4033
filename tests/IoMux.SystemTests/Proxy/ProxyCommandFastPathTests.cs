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
        var result = UnixCommand.Parse(root, Getopt.Canonical(args));
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
    [TestCase("@abstract")]
    [TestCase("@args.rsp")]
    [TestCase("--listen=@listener", "127.0.0.1:8080")]
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
    // getopt_long's readings (issue 21): abbreviations, -cN, the last value winning, --, any order.
    [TestCase("::1:8080")]
    [TestCase("localhost")]
    [TestCase("localhost:http")]
    [TestCase("--connections=5", "127.0.0.1:8080")]
    [TestCase("--con=5", "127.0.0.1:8080")] // systemd's --connections-max, though --connect-timeout shares the prefix
    [TestCase("--c", "5", "--exit=5min", "127.0.0.1:8080")]
    [TestCase("-c5", "127.0.0.1:8080")]
    [TestCase("-c", "5", "-c", "6", "127.0.0.1:8080")]
    [TestCase("-c", "5", "--connections-max", "6", "127.0.0.1:8080")]
    [TestCase("--", "127.0.0.1:8080")]
    [TestCase("--verbose", "--verbose", "127.0.0.1:8080")]
    [TestCase("127.0.0.1:8080", "-c", "3", "--drain=1s", "--cop=buffer", "--connect-=2s", "--lis", "127.0.0.1:9")]
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
    [TestCase("host:no-such-service")]
    [TestCase("-c", "0", "127.0.0.1:8080")]
    [TestCase("-c", "x", "127.0.0.1:8080")]
    [TestCase("-c", "99999999999", "127.0.0.1:8080")]
    [TestCase("-c=5", "127.0.0.1:8080")]
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
    [TestCase("--verbose=true", "127.0.0.1:8080")]
    [TestCase("")]
    [TestCase("-")]
    public void EverythingElseIsLeftToSystemCommandLine(params string[] args)
    {
        Assert.That(ProxyCommand.TryReadCommon(args, out _, out _), Is.False);
    }

    /// <summary>What getopt_long makes of systemd-socket-proxyd's options, read here the same way: abbreviations
    /// (a prefix of systemd's own option wins over IoMux's extensions), -cN, the last value of a repeated option.</summary>
    [TestCase(new[] { "--connections=5", "x:1" }, 5)]
    [TestCase(new[] { "--c", "7", "x:1" }, 7)]
    [TestCase(new[] { "--con=8", "x:1" }, 8)]
    [TestCase(new[] { "-c5", "x:1" }, 5)]
    [TestCase(new[] { "-c", "5", "-c", "6", "x:1" }, 6)]
    [TestCase(new[] { "x:1", "--connections-max=9", "-c", "4" }, 4)]
    public void OptionsAreReadAsGetoptLongReadsThem(string[] args, int connectionsMax)
    {
        Assert.That(ProxyCommand.TryReadCommon(args, out var fast, out _), Is.True);
        Assert.That(fast!.ConnectionsMax, Is.EqualTo(connectionsMax));
        Assert.That(Full(args).Options!.ConnectionsMax, Is.EqualTo(connectionsMax));
    }

    [Test]
    public void AbbreviationsOfSystemdsOptionsKeepTheirMeaning()
    {
        Assert.That(Getopt.Canonical(["--exit=5", "--ver", "--h", "--cop=buffer", "--d=1s", "t"]),
            Is.EqualTo(new[] { "--exit-idle-time=5", "--version", "--help", "--copy=buffer", "--drain-time=1s", "t" }));
        Assert.That(Getopt.Canonical(["--", "-odd"]), Is.EqualTo(new[] { "--", "-odd" }));
    }
}
