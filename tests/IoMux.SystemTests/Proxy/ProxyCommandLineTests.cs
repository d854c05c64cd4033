using IoMux.SocketProxy;

namespace IoMux.Tests.Proxy;

/// <summary>systemd-socket-proxyd's command line, the socket-activation variables, and the forms of targets and
/// time spans the proxy accepts.</summary>
[Category("System")]
public sealed partial class ProxyCommandLineTests
{
    [System.Runtime.InteropServices.LibraryImport("libc", StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    private static partial nint getenv(string name);

    [System.Runtime.InteropServices.LibraryImport("libc", StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);

    /// <summary>The variables are removed from .NET's environment and from the C one (what a child would inherit),
    /// even when the sockets then turn out unusable.</summary>
    [Test, NonParallelizable]
    public void TheActivationVariablesAreRemovedOnceRead()
    {
        var names = new[] { "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES" };
        var values = new[] { Environment.ProcessId.ToString(), "1", "web" };
        for (int i = 0; i < names.Length; i++)
        {
            Environment.SetEnvironmentVariable(names[i], values[i]);
            setenv(names[i], values[i], 1);
        }
        Assert.That(getenv("LISTEN_FDS"), Is.Not.EqualTo(nint.Zero));
        Assert.Throws<SocketActivationException>(() => SocketActivation.TakeListenSockets()); // fd 3 here is no listener
        foreach (var name in names)
        {
            Assert.That(Environment.GetEnvironmentVariable(name), Is.Null, name);
            Assert.That(getenv(name), Is.EqualTo(nint.Zero), $"{name} is still in the C environment");
        }
    }

    [Test]
    public void HelpListsSystemdsOptionsAndMarksTheExtensions()
    {
        var (code, output) = ProxyProcess.RunToExit(null, "--help");
        Assert.That(code, Is.EqualTo(0));
        Assert.That(output, Does.Contain("-c, --connections-max"));
        Assert.That(output, Does.Contain("--exit-idle-time"));
        Assert.That(output, Does.Contain("--version"));
        Assert.That(output, Does.Contain("--listen").And.Contain("Extension: listen on ADDRESS"));
        Assert.That(output, Does.Contain("--verbose").And.Contain("Extension: On an error"));
        Assert.That(output, Does.Contain("Usage:\n  iomux-socket-proxyd <HOST:PORT | /path/to/unix/socket> [options]"));
        Assert.That(output, Does.Contain("-h, /h, --help, -?, /?").Or.Contain("-h, --help").Or.Contain("-?, -h, --help"));
    }

    [Test]
    public void VersionPrintsTheVersion()
    {
        var (code, output) = ProxyProcess.RunToExit(null, "--version");
        Assert.That(code, Is.EqualTo(0));
        Assert.That(output, Does.StartWith("0.1.0"));
    }

    [Test]
    public void WithoutSocketsItSaysSoAndExitsOne()
    {
        var (code, output) = ProxyProcess.RunToExit(null, "127.0.0.1:9");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(output, Does.Contain("No listening socket was passed (LISTEN_FDS is not set)"));
    }

    /// <summary>An unknown option is reported before a missing target or missing sockets, as getopt_long reports it
    /// (System.CommandLine would take it for the target; SystemdDifferentialTests compares with systemd's binary).</summary>
    [TestCase("--bogus"), TestCase("-x"), TestCase("--bogus", "--connections-max=3")]
    public void AnUnknownOptionWithoutATargetIsReportedAsSuch(params string[] arguments)
    {
        var (code, output) = ProxyProcess.RunToExit(null, arguments);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(output.Trim(), Is.EqualTo($"iomux-socket-proxyd: Unrecognized command or argument '{arguments[0]}' (see iomux-socket-proxyd --help)"));
    }

    [Test]
    public void SocketsMeantForAnotherProcessAreRefused()
    {
        var environment = new Dictionary<string, string> { ["LISTEN_PID"] = "1", ["LISTEN_FDS"] = "1" };
        var (code, output) = ProxyProcess.RunToExit(environment, "127.0.0.1:9");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(output, Does.Contain("LISTEN_PID=1 is not this process"));
    }

    [Test]
    public void ABadTargetExitsOneAsInSystemd()
    {
        var (code, output) = ProxyProcess.RunToExit(null, "host:70000");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(output, Does.Contain("the port must be a number from 1 to 65535"));
    }

    [Test]
    public void ActivationVariablesAreCheckedAndNamesRead()
    {
        Assert.Throws<SocketActivationException>(() => SocketActivation.Parse(null, null, null, 100));
        Assert.That(() => SocketActivation.Parse("100", "0", null, 100), Throws.TypeOf<SocketActivationException>().With.Message.Contains("LISTEN_FDS=0"));
        Assert.That(() => SocketActivation.Parse("abc", "1", null, 100), Throws.TypeOf<SocketActivationException>().With.Message.Contains("not this process"));
        // fd 3 in the test host is not a listening socket, and the proxy says so rather than failing later.
        Assert.That(() => SocketActivation.Parse("100", "1", "web", 100), Throws.TypeOf<SocketActivationException>().With.Message.StartsWith("fd 3:"));
    }

    [TestCase("127.0.0.1:8080", null, 8080)]
    [TestCase("[::1]:443", null, 443)]
    [TestCase("localhost:80", "localhost", 80)]
    [TestCase("/run/app.sock", null, 0)]
    [TestCase("@abstract", null, 0)]
    // systemd-socket-proxyd's forms (issue 21): the last ':' splits host and service, no ':' means port 80.
    [TestCase("::1:8080", null, 8080)]
    [TestCase("fe80::1:22", null, 22)]
    [TestCase("localhost", "localhost", 80)]
    [TestCase("127.0.0.1", null, 80)]
    [TestCase("example", "example", 80)]
    [TestCase("localhost:http", "localhost", 80)]
    [TestCase("127.0.0.1:https", null, 443)]
    public void TargetsParse(string text, string? host, int port)
    {
        var target = BackendTarget.Parse(text);
        Assert.That(target.Host, Is.EqualTo(host));
        Assert.That(target.Port, Is.EqualTo(port));
        Assert.That(target.FixedEndpoint is null, Is.EqualTo(host is not null));
    }

    /// <summary>systemd's sockaddr_un_set_path: sun_path is a NUL byte and the name, and the address length
    /// offsetof(sun_path) + 1 + strlen(name), without a terminator; the text with its '@' fits in 107 bytes.</summary>
    [Test]
    public void AnAbstractTargetIsSystemdsAbstractAddress()
    {
        var address = BackendTarget.Parse("@name").FixedEndpoint!.Serialize();
        const int SunPathOffset = 2; // sizeof(sa_family_t)
        Assert.That(address.Size, Is.EqualTo(SunPathOffset + 1 + "name".Length));
        var bytes = new byte[address.Size];
        for (int i = 0; i < bytes.Length; i++)
            bytes[i] = address[i];
        Assert.That(bytes[SunPathOffset..], Is.EqualTo(new byte[] { 0, (byte)'n', (byte)'a', (byte)'m', (byte)'e' }));
        Assert.That(BackendTarget.Parse("@" + new string('a', 106)).Text, Has.Length.EqualTo(107));
        Assert.Throws<FormatException>(() => BackendTarget.Parse("@" + new string('a', 107)));
        Assert.Throws<FormatException>(() => BackendTarget.Parse("@"));
    }

    [TestCase("host:")]
    [TestCase("host:70000")]
    [TestCase("host:0")]
    [TestCase("host:no-such-service")]
    [TestCase(":80")]
    [TestCase("a:b:80")]
    [TestCase("[]:80")]
    public void BadTargetsAreRejected(string text) => Assert.Throws<FormatException>(() => BackendTarget.Parse(text));

    [TestCase("30", 30_000)]
    [TestCase("30s", 30_000)]
    [TestCase("500ms", 500)]
    [TestCase("1min 30s", 90_000)]
    [TestCase("2h", 7_200_000)]
    [TestCase("1.5s", 1_500)]
    [TestCase("1y", 31_557_600_000L)]
    [TestCase("1M", 2_629_800_000L)]
    public void TimeSpansParseLikeSystemd(string text, long milliseconds) =>
        Assert.That(TimeSpans.Parse(text), Is.EqualTo(TimeSpan.FromMilliseconds(milliseconds)));

    /// <summary>"infinity" and spans past the loop's timer range are accepted on the command line (a custom
    /// parser's null once made System.CommandLine throw InvalidCastException).</summary>
    [TestCase("--exit-idle-time=infinity")]
    [TestCase("--exit-idle-time=1000y")]
    [TestCase("--connect-timeout=infinity")]
    [TestCase("--drain-time=infinity")]
    public void EndlessSpansStartTheProxy(string option)
    {
        using var proxy = ProxyProcess.Listening(option, "127.0.0.1:9");
        Assert.That(proxy.Log, Does.Contain("Relaying").And.Not.Contain("Exception"));
    }

    [Test]
    public void InfinityMeansNever() => Assert.That(TimeSpans.Parse("infinity"), Is.Null);

    [TestCase("")]
    [TestCase("5 parsecs")]
    [TestCase("s")]
    [TestCase("-1s")] // systemd's ERANGE, as past 2^64 microseconds
    [TestCase("584943y")]
    public void BadTimeSpansAreRejected(string text) => Assert.Throws<FormatException>(() => TimeSpans.Parse(text));

    /// <summary>systemd takes spans up to 584,000 years; past TimeSpan's 29,000 they are its longest.</summary>
    [Test]
    public void SpansLongerThanATimeSpanAreItsLongest() =>
        Assert.That(TimeSpans.Parse("1000000000000"), Is.EqualTo(TimeSpan.MaxValue));

    [Test]
    public void IomuxProxyIsTheSameCommand()
    {
        using var output = new StringWriter();
        var command = ProxyCommand.Configure(new System.CommandLine.Command("proxy"));
        Assert.That(command.Options.Select(o => o.Name), Does.Contain("--connections-max").And.Contain("--exit-idle-time").And.Contain("--listen"));
    }
}
