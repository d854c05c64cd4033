using IoMux.Cli;
using IoMux.Interop;

namespace IoMux.Tests;

/// <summary>The iomux command's two jobs, run in-process.</summary>
public sealed class CliTests
{
    [Test]
    public void BackendsListsEveryBackendAndTheChosenOne()
    {
        var output = new StringWriter();
        int rc = Commands.Backends(output);
        var text = output.ToString();
        Assert.That(rc, Is.EqualTo(0), text);
        Assert.That(text, Does.Contain("epoll").And.Contain("poll").And.Contain("select").And.Contain("poll-derived"));
        if (OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable(BackendSelector.EnvironmentVariable) is null)
            Assert.That(text, Does.Contain("chosen: epoll"));
        Assert.That(text, Does.Contain("emulated"), "poll and select emulate edge mode");
    }

    [Test]
    public void CheckPrintsAScenarioByBackendTableAndSucceeds()
    {
        var output = new StringWriter();
        int rc = Commands.Check(output, "select", "H8");
        var text = output.ToString();
        Assert.That(rc, Is.EqualTo(0), text);
        Assert.That(text, Does.Match(@"H8\s+pass"));
        Assert.That(text, Does.Contain("check: 1 passed, 0 failed, 0 skipped"));
    }

    [Test]
    public void CheckReportsSkipsWithTheirReason()
    {
        var output = new StringWriter();
        int rc = Commands.Check(output, "select", "X6");
        Assert.That(rc, Is.EqualTo(0));
        Assert.That(output.ToString(), Does.Contain("skip X6 on select: select watches descriptors up to"));
    }

    [Test]
    public void CheckFoldsABackendThatCannotRunHereIntoOneLine()
    {
        var output = new StringWriter();
        int rc = Commands.Check(output, null, "H8");
        var lines = output.ToString().Split('\n');
        Assert.That(rc, Is.EqualTo(0), output.ToString());
        foreach (var provider in Conformance.ConformanceRunner.Targets.Where(t => !t.IsSupported))
        {
            Assert.That(lines.Count(l => l.StartsWith($"skip {provider.Name} cannot run here")), Is.EqualTo(1), $"one line for {provider.Name}");
            Assert.That(lines.Any(l => l.StartsWith($"skip H8 on {provider.Name}")), Is.False, "no per-scenario skip for it");
        }
        var onlyUnavailable = Conformance.ConformanceRunner.Targets.FirstOrDefault(t => !t.IsSupported);
        if (onlyUnavailable is not null)
            Assert.That(Commands.Check(new StringWriter(), onlyUnavailable.Name, "H8"), Is.EqualTo(2), "nothing could run: exit 2");
    }

    [Test]
    public void CheckRefusesUnknownNames()
    {
        Assert.That(Commands.Check(new StringWriter(), "iocp", null), Is.EqualTo(2));
        Assert.That(Commands.Check(new StringWriter(), null, "Z99"), Is.EqualTo(2));
    }
}

/// <summary>UnixCommand in-process: what the process tests (CommandErrorTests) cannot provoke.</summary>
public sealed class UnixCommandTests
{
    private static System.CommandLine.Command Failing(Exception failure)
    {
        var root = IoMux.SocketProxy.UnixCommand.Root("tool", "a command whose action fails");
        root.SetAction(new Func<System.CommandLine.ParseResult, int>(_ => throw failure));
        return root;
    }

    [Test]
    public void AnUnexpectedExceptionIsOneLineExitOneAndItsTraceOnlyUnderVerbose()
    {
        var quiet = new StringWriter();
        Assert.That(IoMux.SocketProxy.UnixCommand.Run(Failing(new InvalidOperationException("broken\ninvariant")), [], quiet), Is.EqualTo(1));
        Assert.That(quiet.ToString(), Is.EqualTo("tool: broken invariant (InvalidOperationException; --verbose shows where)" + Environment.NewLine));

        var verbose = new StringWriter();
        Assert.That(IoMux.SocketProxy.UnixCommand.Run(Failing(new InvalidOperationException("broken")), ["--verbose"], verbose), Is.EqualTo(1));
        var lines = verbose.ToString().Split(Environment.NewLine);
        Assert.That(lines[0], Is.EqualTo("tool: broken (InvalidOperationException; --verbose shows where)"));
        Assert.That(lines.Any(l => l.StartsWith("   at ", StringComparison.Ordinal)), Is.True, verbose.ToString());
    }

    [Test]
    public void APosixExceptionNamesItsErrno()
    {
        var error = new StringWriter();
        Assert.That(IoMux.SocketProxy.UnixCommand.Run(Failing(new PosixException("bind", Errno.EADDRINUSE, "[::1]:80")), [], error), Is.EqualTo(1));
        Assert.That(error.ToString(), Does.StartWith("tool: bind failed: EADDRINUSE ("));
    }

    [Test]
    public void SeveralParseErrorsShareOneLine()
    {
        var root = IoMux.SocketProxy.UnixCommand.Root("tool", "takes a port");
        root.Add(IoMux.SocketProxy.UnixCommand.BoundedInt("--port", "-p", "a port", 1, 65535, 80));
        root.SetAction(_ => Assert.Fail("the action ran despite the errors"));
        var error = new StringWriter();
        Assert.That(IoMux.SocketProxy.UnixCommand.Run(root, ["-p", "0", "--nope"], error), Is.EqualTo(2));
        Assert.That(error.ToString(), Is.EqualTo("tool: Unrecognized command or argument '--nope'; --port 0: not a port (1-65535) (see tool --help)" + Environment.NewLine));
    }

    [TestCase(98, "address in use (EADDRINUSE)")]
    [TestCase(13, "permission denied (EACCES)")]
    [TestCase(30, "read-only file system (EROFS)")]
    [TestCase(111, "connection refused (ECONNREFUSED)")]
    public void ReasonsNameTheErrno(int linuxErrno, string reason)
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("Linux numbering");
        Assert.That(IoMux.SocketProxy.UnixCommand.Reason(linuxErrno), Is.EqualTo(reason));
    }
}

/// <summary>docs/SEMANTICS.md and the scenario catalogue must not drift apart.</summary>
public sealed class SemanticsDocumentTests
{
    [Test]
    public void EveryScenarioHasARowInSemanticsMd()
    {
        var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "IoMux.sln")))
            dir = dir.Parent;
        Assert.That(dir, Is.Not.Null, "repository root not found");
        var doc = File.ReadAllText(Path.Combine(dir!.FullName, "docs", "SEMANTICS.md"));
        foreach (var scenario in Conformance.ScenarioCatalog.All)
            Assert.That(doc, Does.Contain($"| {scenario.Id} | "), $"docs/SEMANTICS.md has no row for {scenario.Id}");
    }
}
