using System.Diagnostics;

namespace IoMux.Tests;

/// <summary>The CI version of bench/soak.sh: 60 seconds of the proxy and the file server under load with every fault
/// injected (client resets, backend restart, backend SIGSTOP/SIGCONT, the proxy's descriptor limit squeezed and
/// released, SIGTERM under load). Every byte is checked by SHA-256; the run fails on a lost or changed byte, a crash,
/// or an exit code other than 0 after SIGTERM.</summary>
[Category("System")]
[NonParallelizable]
public sealed class SoakTests
{
    [Test, CancelAfter(360_000)]
    public void SixtySecondsOfLoadWithFaultsLoseNothing()
    {
        var root = TestProcesses.RepositoryRoot();
        foreach (var tool in new[] { "python3", "systemd-socket-activate", "prlimit" })
            TestProcesses.RequireTool(tool, "the soak needs it");
        var start = new ProcessStartInfo("bash", [Path.Combine(root, "bench", "soak.sh"), "60"])
        {
            WorkingDirectory = root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var soak = Process.Start(start)!;
        var output = soak.StandardOutput.ReadToEndAsync();
        var error = soak.StandardError.ReadToEndAsync();
        if (!soak.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            soak.Kill(entireProcessTree: true);
            Assert.Fail("the soak did not end within 5 minutes");
        }
        TestContext.Out.WriteLine(output.Result);
        Assert.That(soak.ExitCode, Is.EqualTo(0), $"{output.Result}\n{error.Result}");
        Assert.That(output.Result, Does.Contain("bytes lost or changed: 0 (echo), 0 bad downloads"));
        Assert.That(output.Result, Does.Not.Contain("CRASHED"));
    }
}
