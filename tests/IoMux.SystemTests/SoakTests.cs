using System.Diagnostics;

namespace IoMux.Tests;

/// <summary>The CI version of bench/soak.sh: 60 seconds of the proxy and the file server under load with every fault
/// injected (client resets, backend restart, backend SIGSTOP/SIGCONT, the proxy's descriptor limit squeezed and
/// released, SIGTERM under load), judged by the soak's strict verdict (bench/soak/soak.py): every fault is a
/// recorded window, and an echo or download that fails outside the windows that can excuse it (plus 5 s) fails
/// the run, as do changed or extra bytes, a truncated download, a `Connection: close` download not closed within
/// 2 s of its last byte, a crash, an exit code other than 0 after SIGTERM, and descriptors or RSS above the
/// stated bounds once the processes are idle again.</summary>
[Category("System")]
[NonParallelizable]
public sealed class SoakTests
{
    [Test] // bounded by the waits below (publishing both programs and the 60 s run take a few minutes)
    public void SixtySecondsOfLoadWithFaultsHaveNoUnexplainedFailure()
    {
        var root = TestProcesses.RepositoryRoot();
        foreach (var tool in new[] { "python3", "systemd-socket-activate" })
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
        if (!soak.WaitForExit(TimeSpan.FromMinutes(8)))
        {
            soak.Kill(entireProcessTree: true);
            Assert.Fail("the soak did not end within 8 minutes");
        }
        // The script stops everything it started (atexit), so its pipes end with it; bounded all the same.
        Assert.That(Task.WaitAll([output, error], TimeSpan.FromSeconds(30)), Is.True, "the soak's output did not end");
        TestContext.Out.WriteLine(output.Result);
        Assert.That(output.Result, Does.Contain("unexplained failures: 0"), $"{output.Result}\n{error.Result}");
        Assert.That(output.Result, Does.Contain("verdict: PASS"), $"{output.Result}\n{error.Result}");
        Assert.That(soak.ExitCode, Is.EqualTo(0), $"{output.Result}\n{error.Result}");
    }
}
