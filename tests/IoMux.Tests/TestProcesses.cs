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
