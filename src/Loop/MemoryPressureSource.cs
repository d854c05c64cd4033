using System.Runtime.InteropServices;
using System.Text;
using IoMux.Interop;

namespace IoMux.Loop;

/// <summary>
/// Memory pressure, reported on the loop thread (sd_event_add_memory_pressure): a PSI trigger on the process's cgroup
/// (<c>/sys/fs/cgroup/…/memory.pressure</c>, or <c>/proc/pressure/memory</c> where the cgroup has none) that fires when
/// tasks stalled on memory for 200 ms within 2 s (sd-event's default: "some 200000 2000000", the window the kernel
/// allows unprivileged users), watched for EPOLLPRI; or, when the service manager says so, the path in
/// <c>MEMORY_PRESSURE_WATCH</c> with the trigger in <c>MEMORY_PRESSURE_WRITE</c> (base64), as systemd sets them for a
/// unit with <c>MemoryPressureWatch=</c>. A FIFO or character device there is watched for readability, and what it
/// carries is read and dropped. A PSI file needs epoll: the other backends refuse a regular file or EPOLLPRI
/// (<see cref="NotSupportedException"/>); a FIFO works on every backend. The callback is where to drop caches (sd-event's default callback trims malloc's;
/// .NET's counterpart is the program's own caches and, if it must, a GC). Linux only; a socket path is not supported.
/// </summary>
public sealed unsafe partial class MemoryPressureSource : EventSource
{
    private const int O_RDONLY = 0, O_RDWR = 2, O_NOCTTY = 0x100, EOPNOTSUPP = 95;

    /// <summary>sd-event's default trigger (MEMORY_PRESSURE_DEFAULT_TYPE, _THRESHOLD_USEC, _WINDOW_USEC), with the NUL
    /// the kernel's psi_write expects: it overwrites the last byte written with one.</summary>
    internal static readonly byte[] DefaultTrigger = Encoding.ASCII.GetBytes("some 200000 2000000\0");

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    private readonly Action<MemoryPressureSource> _callback;
    private readonly OwnedDescriptor _descriptor;
    private readonly bool _drain; // a FIFO or character device: what it carries is read and dropped

    private protected override int PriorityValue { get; set; }
    private protected override string? DescriptionValue { get; set; }
    private protected override long IdValue { get; set; }
    internal override SourceVisit Visit => SourceVisit.WhenReported;

    internal MemoryPressureSource(EventLoop loop, string path, byte[]? trigger, Action<MemoryPressureSource> callback, int priority,
        SourceState state, string? description)
        : base(loop, priority, state, description ?? $"memory pressure {path}")
    {
        Path = path;
        _callback = callback;
        // PSI files live in procfs and cgroupfs and signal with EPOLLPRI (sd-event checks the file system's magic; a
        // path outside them is taken for a FIFO or a character device, which signals with readability).
        bool psi = path.StartsWith("/proc/", StringComparison.Ordinal) || path.StartsWith("/sys/fs/cgroup/", StringComparison.Ordinal);
        _drain = !psi;
        // A FIFO is opened for writing too, so that it never reports a hang-up (no writer left) forever.
        int fd = Open(path, (psi && trigger is null ? O_RDONLY : O_RDWR) | LibC.O_NONBLOCK_LINUX | LibC.O_CLOEXEC_LINUX | O_NOCTTY);
        if (fd < 0)
            throw new PosixException("open", Errno.Last, path);
        if (trigger is { Length: > 0 })
        {
            fixed (byte* bytes = trigger)
            {
                if (LibC.write(fd, bytes, (nuint)trigger.Length) < 0)
                {
                    int errno = Errno.Last;
                    LibC.CloseQuietly(fd);
                    if (errno == EOPNOTSUPP)
                        throw new NotSupportedException($"{path}: the kernel has no PSI triggers here (EOPNOTSUPP).");
                    throw new PosixException("write", errno, $"{path}: the pressure trigger was refused");
                }
            }
        }
        // A backend that cannot watch it refuses it here (a PSI file is a regular file: epoll only).
        _descriptor = new OwnedDescriptor(this, fd, psi ? Interest.Priority : Interest.Readable);
    }

    /// <summary>The file watched.</summary>
    public string Path { get; }

    /// <summary>The descriptor (owned by the source).</summary>
    public int Descriptor => _descriptor.Fd;

    private protected override void OnStateChanged(SourceState previous, SourceState current) => _descriptor.Sync();

    private protected override void OnRateLimitChanged(bool limited) => _descriptor.Sync();

    internal override void Dispatch()
    {
        if (_drain)
        {
            // What a FIFO carries says nothing more than its arrival: drop it, or it would keep the source ready. One
            // read of PIPE_BUF, as sd-event's source_memory_pressure_initiate_dispatch: a character device that never
            // runs dry (MEMORY_PRESSURE_WATCH=/dev/zero) kept a read-until-empty loop, and the loop thread, in here
            // forever; what one read leaves makes the source ready again in the next iteration.
            const int PipeBuf = 4096;
            byte* scratch = stackalloc byte[PipeBuf];
            LibC.read(_descriptor.Fd, scratch, PipeBuf);
        }
        _callback(this);
    }

    private protected override void OnDispose() => _descriptor.Close();

    /// <summary>Where sd_event_add_memory_pressure looks: <c>MEMORY_PRESSURE_WATCH</c> (empty or <c>/dev/null</c>:
    /// disabled) with <c>MEMORY_PRESSURE_WRITE</c>; else the cgroup's <c>memory.pressure</c>, else the system's.</summary>
    internal static (string Path, byte[]? Trigger) Locate()
    {
        if (Environment.GetEnvironmentVariable("MEMORY_PRESSURE_WATCH") is { } watch)
        {
            if (watch.Length == 0 || watch == "/dev/null")
                throw new NotSupportedException("Memory pressure watching is disabled by MEMORY_PRESSURE_WATCH.");
            if (!System.IO.Path.IsPathFullyQualified(watch))
                throw new ArgumentException($"MEMORY_PRESSURE_WATCH is not an absolute path: {watch}");
            var write = Environment.GetEnvironmentVariable("MEMORY_PRESSURE_WRITE");
            return (watch, string.IsNullOrEmpty(write) ? null : Convert.FromBase64String(write));
        }
        const string system = "/proc/pressure/memory";
        string? cgroup = null;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/cgroup"))
                if (line.StartsWith("0::", StringComparison.Ordinal))
                    cgroup = "/sys/fs/cgroup" + line[3..].TrimEnd('/') + "/memory.pressure";
        }
        catch (IOException)
        {
        }
        if (cgroup is not null && File.Exists(cgroup))
            return (cgroup, DefaultTrigger);
        if (File.Exists(system))
            return (system, DefaultTrigger);
        throw new NotSupportedException("The kernel reports no memory pressure (no PSI: neither the cgroup's memory.pressure nor /proc/pressure/memory).");
    }
}

public sealed partial class EventLoop
{
    /// <summary>Calls <paramref name="callback"/> on the loop thread when the system says memory is short
    /// (sd_event_add_memory_pressure); see <see cref="MemoryPressureSource"/> for where it looks.</summary>
    /// <exception cref="PlatformNotSupportedException">Not Linux.</exception>
    /// <exception cref="NotSupportedException">The kernel has no PSI, or <c>MEMORY_PRESSURE_WATCH</c> disables it.</exception>
    /// <exception cref="PosixException">The file could not be opened, or the trigger was refused (EPERM, EINVAL).</exception>
    public MemoryPressureSource AddMemoryPressure(Action<MemoryPressureSource> callback, int priority = 0,
        SourceState state = SourceState.On, string? description = null)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(callback);
        if (!OperatingSystem.IsLinux())
            throw new PlatformNotSupportedException("Memory pressure (PSI) is Linux's.");
        var (path, trigger) = MemoryPressureSource.Locate();
        return AddMemoryPressure(path, trigger, callback, priority, state, description);
    }

    /// <summary>A memory pressure source on <paramref name="path"/>, writing <paramref name="trigger"/> first (tests
    /// give a FIFO here, as systemd's own tests do).</summary>
    internal MemoryPressureSource AddMemoryPressure(string path, byte[]? trigger, Action<MemoryPressureSource> callback, int priority = 0,
        SourceState state = SourceState.On, string? description = null)
    {
        ThrowIfDisposed();
        return Attach(new MemoryPressureSource(this, path, trigger, callback, priority, state, description));
    }
}
