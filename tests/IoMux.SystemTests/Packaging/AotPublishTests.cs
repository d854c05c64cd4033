namespace IoMux.Tests.Packaging;

/// <summary>Both commands publish with Native AOT for linux-x64 with no trim or AOT warning (issue 24): the check is
/// bench/aot-publish.sh, the documented command, run as a user runs it. The libraries' and the tool's analyzers
/// (IsAotCompatible) catch most of what would warn at every build; only the native compile sees the whole program
/// (System.CommandLine, the conformance runner, what a pragma hides from the analyzer). Two native compiles take
/// 1-3 minutes each on a loaded 2-core machine: category "Aot" lets a developer leave it out
/// (--filter TestCategory!=Aot); .ci/run runs it.</summary>
[Category("Aot")]
[NonParallelizable]
public sealed class AotPublishTests
{
    [Test] // no CancelAfter: the script runs under its own deadline below
    public void BothCommandsPublishNativelyWithoutWarningsAndRun()
    {
        if (!OperatingSystem.IsLinux() || System.Runtime.InteropServices.RuntimeInformation.OSArchitecture != System.Runtime.InteropServices.Architecture.X64)
            Assert.Ignore("bench/aot-publish.sh builds for linux-x64, on a linux-x64 host");
        var root = TestProcesses.RepositoryRoot();
        var work = Directory.CreateTempSubdirectory("iomux-aot-").FullName;
        try
        {
            // Under the run settings' 10-minute hang timeout, so that a slow machine fails here with the output.
            var output = Run(root, Path.Combine(root, "bench", "aot-publish.sh"), [work], TimeSpan.FromMinutes(9));
            var iomux = Path.Combine(work, "bin", "iomux");
            var proxyd = Path.Combine(work, "bin", "iomux-socket-proxyd");
            Assert.That(output, Does.Contain($"{iomux} (").And.Contain($"{proxyd} ("));
            foreach (var binary in new[] { iomux, proxyd })
            {
                Assert.That(File.ReadAllBytes(binary).Take(4), Is.EqualTo(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' }), $"{binary} is not native");
                Assert.That(File.Exists(Path.ChangeExtension(binary, ".dll")), Is.False, $"{binary}: a managed assembly beside it");
            }
            // The native binaries run: the tool's commands and the proxy's own command-line reader (System.CommandLine,
            // for --version).
            Assert.That(Run(work, iomux, ["backends"], TimeSpan.FromMinutes(1)), Does.Contain("chosen:"));
            Assert.That(Run(work, iomux, ["check", "--backend", "epoll"], TimeSpan.FromMinutes(2)), Does.Match(@"check: \d+ passed, 0 failed"));
            Assert.That(Run(work, proxyd, ["--version"], TimeSpan.FromMinutes(1)), Does.Match(@"\d+\.\d+\.\d+"));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    private static string Run(string directory, string file, string[] arguments, TimeSpan timeout) =>
        PackageInstallTests.Run(directory, file, arguments, packages: null, timeout);
}
