using System.Runtime.InteropServices;

namespace IoMux.Tests;

/// <summary>What the tests that run other processes share: signals, CPU time from /proc, the repository root.</summary>
internal static partial class TestProcesses
{
    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int KillNative(int pid, int signal);

    /// <summary>kill(2); 0 on success.</summary>
    public static int Signal(int pid, int signal) => KillNative(pid, signal);

    /// <summary>CPU time (user + system) a process has used, from /proc/PID/stat, in clock ticks (1/100 s).</summary>
    /// <summary>Skips the test, saying why, when <paramref name="tool"/> is not on the PATH: a missing tool is a
    /// reason to skip, not a failure of IoMux (.ci/run installs what the tests use).</summary>
    public static void RequireTool(string tool, string purpose)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin";
        if (!path.Split(':').Concat(["/usr/sbin", "/sbin"]).Any(directory => File.Exists(Path.Combine(directory, tool))))
            NUnit.Framework.Assert.Ignore($"{tool} is not installed: {purpose}");
    }

    /// <summary>Sets <paramref name="pid"/>'s soft descriptor limit with prlimit, asserting that it worked. The soft
    /// limit only: a lowered hard limit cannot be raised again without CAP_SYS_RESOURCE (not even as root in a
    /// container), which would leave the process squeezed for good.</summary>
    public static void SetDescriptorLimit(int pid, int limit)
    {
        RequireTool("prlimit", "the test squeezes a process's descriptor limit with it");
        var hard = File.ReadLines($"/proc/{pid}/limits").First(l => l.StartsWith("Max open files", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)[4];
        using var prlimit = System.Diagnostics.Process.Start("prlimit", $"--pid {pid} --nofile={limit}:{hard}")!;
        NUnit.Framework.Assert.That(prlimit.WaitForExit(10_000), NUnit.Framework.Is.True, "prlimit did not exit");
        NUnit.Framework.Assert.That(prlimit.ExitCode, NUnit.Framework.Is.EqualTo(0), "prlimit failed");
    }

    public static long CpuTicks(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[11]) + long.Parse(fields[12]); // utime, stime (fields 14 and 15 of the line)
    }

    /// <summary>The directory holding IoMux.sln, found upward from the test binaries.</summary>
    public static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
            if (File.Exists(Path.Combine(directory.FullName, "IoMux.sln")))
                return directory.FullName;
        throw new InvalidOperationException("IoMux.sln not found above the test binaries");
    }
}
