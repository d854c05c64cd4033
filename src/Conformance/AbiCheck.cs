using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using IoMux.Backends.Kqueue;
using IoMux.Interop;

namespace IoMux.Conformance;

/// <summary>
/// <c>iomux check --abi</c>: every per-OS constant and struct layout IoMux uses on this OS, beside what this machine's C
/// compiler says for it from the OS's own headers. A user on FreeBSD, macOS or illumos confirms IoMux's tables on
/// their machine with one command; on Linux it checks the Linux column, as the layout tests do.
/// </summary>
public static class AbiCheck
{
    /// <summary>Exit code: every value agrees.</summary>
    public const int Agrees = 0;
    /// <summary>Exit code: at least one value differs from the C headers.</summary>
    public const int Differs = 1;
    /// <summary>Exit code: no C compiler here, or it or the program it built failed: nothing could be compared.</summary>
    public const int NoCompiler = 3;

    /// <summary>One value: its name, IoMux's number (null: IoMux says the OS has none), and the C expression that gives
    /// the header's (under <paramref name="Guard"/>: absent when that macro is not defined).</summary>
    internal sealed record Row(string Name, long? IoMux, string C, string? Guard = null);

    /// <summary>Compiles the headers' values, prints the comparison to <paramref name="output"/> and returns the exit code.</summary>
    public static int Run(TextWriter output) => Run(output, RowsForThisOs());

    /// <summary>The same for given rows (tests change one to see the check fail).</summary>
    internal static int Run(TextWriter output, IReadOnlyList<Row> rows, string? searchPath = null)
    {
        string? compiler = FindCompiler(searchPath ?? Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin");
        if (compiler is null)
        {
            output.WriteLine("iomux check --abi: no C compiler found (cc, gcc or clang on PATH); install one to compare IoMux's values with the headers");
            return NoCompiler;
        }
        var (headers, error) = CompileAndRun(compiler, Program(rows));
        if (headers is null)
        {
            output.WriteLine($"iomux check --abi: {error}");
            return NoCompiler;
        }
        return Report(output, rows, headers);
    }

    /// <summary>Prints one line per row and a summary; <see cref="Differs"/> when any row differs.</summary>
    internal static int Report(TextWriter output, IReadOnlyList<Row> rows, IReadOnlyDictionary<string, long?> headers)
    {
        output.WriteLine($"{Platform.Flavor} {RuntimeInformation.ProcessArchitecture}: IoMux's values beside the C headers ({rows.Count} values)");
        output.WriteLine($"  {"value",-34} {"IoMux",12} {"headers",12}");
        int differ = 0;
        foreach (var row in rows)
        {
            headers.TryGetValue(row.Name, out var header);
            bool same = row.IoMux == header;
            if (!same)
                differ++;
            output.WriteLine($"  {row.Name,-34} {Show(row.IoMux),12} {Show(header),12}{(same ? "" : "   DIFFERS")}");
        }
        output.WriteLine(differ == 0 ? $"all {rows.Count} values agree with the headers" : $"{differ} of {rows.Count} values differ from the headers");
        return differ == 0 ? Agrees : Differs;

        static string Show(long? value) => value is { } v ? (v > 255 ? "0x" + v.ToString("X", CultureInfo.InvariantCulture) : v.ToString(CultureInfo.InvariantCulture)) : "none";
    }

    /// <summary>What IoMux uses on this OS.</summary>
    internal static List<Row> RowsForThisOs()
    {
        var os = Platform.Flavor;
        var stat = OsAbi.Stat(os, RuntimeInformation.ProcessArchitecture);
        string mtim = os == UnixFlavor.MacOS ? "st_mtimespec" : "st_mtim";
        var rows = new List<Row>
        {
            new("FIONREAD", (long)OsAbi.FionRead(os), "FIONREAD"),
            new("RLIMIT_NOFILE", OsAbi.RlimitNofile(os), "RLIMIT_NOFILE"),
            new("AF_INET6", OsAbi.AfInet6(os), "AF_INET6"),
            new("SOL_SOCKET", OsAbi.SolSocket(os), "SOL_SOCKET"),
            new("SO_TYPE", OsAbi.SoType(os), "SO_TYPE"),
            new("SOCK_STREAM", OsAbi.SockStream(os), "SOCK_STREAM"),
            new("O_NONBLOCK", LibC.O_NONBLOCK, "O_NONBLOCK"),
            new("POLLRDHUP", OsAbi.PollRdHup(os) is 0 ? null : OsAbi.PollRdHup(os), "POLLRDHUP", "POLLRDHUP"),
            os == UnixFlavor.FreeBSD
                ? new("SO_REUSEPORT_LB", OsAbi.SoReusePort(os), "SO_REUSEPORT_LB", "SO_REUSEPORT_LB")
                : new("SO_REUSEPORT", OsAbi.SoReusePort(os), "SO_REUSEPORT", "SO_REUSEPORT"),
            new("offsetof(stat, st_mode)", stat.ModeOffset, "offsetof(struct stat, st_mode)"),
            new("sizeof(stat.st_mode)", stat.ModeWidth, "sizeof(((struct stat*)0)->st_mode)"),
            new("offsetof(stat, st_size)", stat.SizeOffset, "offsetof(struct stat, st_size)"),
            new($"offsetof(stat, {mtim})", stat.ModifiedOffset, $"offsetof(struct stat, {mtim})"),
            new("sizeof(struct stat)", stat.Size, "sizeof(struct stat)"),
            new("sizeof(struct pollfd)", Marshal.SizeOf<PollFd>(), "sizeof(struct pollfd)"),
            // The one Timespec (src/Interop/Timespec.cs) that epoll_pwait2, kevent and port_getn take.
            new("sizeof(struct timespec)", Marshal.SizeOf<Timespec>(), "sizeof(struct timespec)"),
            new("sizeof(sockaddr_un.sun_path)", OsAbi.SunPathLength(os), "sizeof(((struct sockaddr_un*)0)->sun_path)"),
        };
        // Every errno IoMux names (Errno's fields); -1 there means "this OS has none".
        foreach (var field in typeof(Errno).GetFields(BindingFlags.Public | BindingFlags.Static).Where(f => f.FieldType == typeof(int)))
        {
            int value = (int)field.GetValue(null)!;
            rows.Add(new(field.Name, value < 0 ? null : value, field.Name, field.Name));
        }
        if (KqueueTable(os) is { } kq)
        {
            rows.Add(new("EVFILT_READ", kq.Read, "EVFILT_READ"));
            rows.Add(new("EVFILT_WRITE", kq.Write, "EVFILT_WRITE"));
            rows.Add(new("EVFILT_USER", kq.User, "EVFILT_USER", "EVFILT_USER"));
            rows.Add(new("EVFILT_EXCEPT", kq.Except, "EVFILT_EXCEPT", "EVFILT_EXCEPT"));
            rows.Add(new("EVFILT_SYSCOUNT", kq.FilterCount, "EVFILT_SYSCOUNT", "EVFILT_SYSCOUNT"));
            // NetBSD 11's header names the 72-byte struct of __kevent100; IoMux binds __kevent50 (40 bytes, struct kevent100
            // there): compiled against an 11 header these rows say DIFFERS although IoMux is right (docs/BACKENDS.md).
            rows.Add(new("sizeof(struct kevent)", kq.Layout.Size, "sizeof(struct kevent)"));
            rows.Add(new("offsetof(kevent, filter)", kq.Layout.FilterOffset, "offsetof(struct kevent, filter)"));
            rows.Add(new("offsetof(kevent, flags)", kq.Layout.FlagsOffset, "offsetof(struct kevent, flags)"));
            rows.Add(new("offsetof(kevent, fflags)", kq.Layout.FFlagsOffset, "offsetof(struct kevent, fflags)"));
            rows.Add(new("offsetof(kevent, data)", kq.Layout.DataOffset, "offsetof(struct kevent, data)"));
            rows.Add(new("offsetof(kevent, udata)", kq.Layout.UDataOffset, "offsetof(struct kevent, udata)"));
        }
        if (os is UnixFlavor.Illumos or UnixFlavor.Solaris)
        {
            rows.Add(new("sizeof(port_event_t)", Marshal.SizeOf<Backends.EventPorts.PortEvent>(), "sizeof(port_event_t)"));
            rows.Add(new("offsetof(port_event_t, portev_object)", Marshal.OffsetOf<Backends.EventPorts.PortEvent>(nameof(Backends.EventPorts.PortEvent.Object)).ToInt64(), "offsetof(port_event_t, portev_object)"));
            rows.Add(new("PORT_SOURCE_FD", Backends.EventPorts.PortSource.Fd, "PORT_SOURCE_FD"));
            rows.Add(new("PORT_SOURCE_USER", Backends.EventPorts.PortSource.User, "PORT_SOURCE_USER"));
        }
        return rows;
    }

    private static KqueueProfile? KqueueTable(UnixFlavor os) => os switch
    {
        UnixFlavor.FreeBSD => Environment.OSVersion.Version.Major >= 15 ? KqueueProfile.FreeBsd15 : KqueueProfile.FreeBsd14, // as NativeKqueue picks
        UnixFlavor.MacOS => KqueueProfile.MacOS,
        UnixFlavor.NetBSD => KqueueProfile.NetBsd,
        UnixFlavor.OpenBSD => KqueueProfile.OpenBsd,
        UnixFlavor.DragonFly => KqueueProfile.DragonFly,
        _ => null,
    };

    /// <summary>A C program that prints "NAME VALUE" (or "NAME absent") for every row.</summary>
    internal static string Program(IEnumerable<Row> rows)
    {
        var c = new StringBuilder();
        c.AppendLine("#define _GNU_SOURCE");
        c.AppendLine("#include <stdio.h>\n#include <stddef.h>\n#include <errno.h>\n#include <fcntl.h>\n#include <poll.h>\n#include <time.h>");
        c.AppendLine("#include <sys/types.h>\n#include <sys/ioctl.h>\n#include <sys/resource.h>\n#include <sys/socket.h>\n#include <sys/stat.h>\n#include <netinet/in.h>\n#include <sys/un.h>");
        c.AppendLine("#if defined(__sun)\n#include <sys/filio.h>\n#include <port.h>\n#endif");
        c.AppendLine("#if defined(__FreeBSD__) || defined(__APPLE__) || defined(__NetBSD__) || defined(__OpenBSD__) || defined(__DragonFly__)\n#include <sys/event.h>\n#endif");
        c.AppendLine("int main(void) {");
        foreach (var row in rows)
        {
            string print = $"  printf(\"%s %lld\\n\", \"{row.Name}\", (long long)({row.C}));";
            if (row.Guard is null)
                c.AppendLine(print);
            else
                c.AppendLine($"#ifdef {row.Guard}\n{print}\n#else\n  printf(\"%s absent\\n\", \"{row.Name}\");\n#endif");
        }
        c.AppendLine("  return 0;\n}");
        return c.ToString();
    }

    /// <summary>Parses the program's output: name → value (null for absent).</summary>
    internal static Dictionary<string, long?> Parse(string text)
    {
        var values = new Dictionary<string, long?>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int space = line.LastIndexOf(' ');
            if (space <= 0)
                continue;
            var value = line[(space + 1)..];
            values[line[..space]] = value == "absent" ? null : long.Parse(value, CultureInfo.InvariantCulture);
        }
        return values;
    }

    private static string? FindCompiler(string searchPath)
    {
        foreach (var name in new[] { "cc", "gcc", "clang" })
        {
            foreach (var dir in searchPath.Split(':', StringSplitOptions.RemoveEmptyEntries))
            {
                var path = Path.Combine(dir, name);
                if (File.Exists(path))
                    return path;
            }
        }
        return null;
    }

    private static (Dictionary<string, long?>? Values, string Error) CompileAndRun(string compiler, string program)
    {
        var dir = Directory.CreateTempSubdirectory("iomux-abi-");
        try
        {
            var source = Path.Combine(dir.FullName, "abi.c");
            var binary = Path.Combine(dir.FullName, "abi");
            File.WriteAllText(source, program);
            var (rc, output) = Execute(compiler, ["-o", binary, source]);
            if (rc != 0)
                return (null, $"{Path.GetFileName(compiler)} could not compile the header check (exit {rc}): {output.Split('\n').FirstOrDefault(l => l.Contains("error", StringComparison.Ordinal))?.Trim() ?? output.Trim()}");
            (rc, output) = Execute(binary, []);
            if (rc != 0)
                return (null, $"the compiled header check exited {rc}: nothing was compared");
            try
            {
                return (Parse(output), "");
            }
            catch (FormatException)
            {
                return (null, $"the compiled header check printed something unexpected: {output.Split('\n').FirstOrDefault()}");
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static (int ExitCode, string Output) Execute(string file, string[] arguments)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(60_000))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(10_000); // before the caller deletes its directory
            return (-1, "timed out after 60 s");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }
}
