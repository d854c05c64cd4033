namespace IoMux;

/// <summary>A system call failed. <see cref="ErrorName"/> is the errno's symbolic name (EBADF, EMFILE ...).</summary>
public class PosixException : IOException
{
    /// <summary>A failure without an errno (<see cref="Errno"/> 0, <see cref="Operation"/> empty).</summary>
    public PosixException() : this("A system call failed.") { }

    /// <summary>A failure described by <paramref name="message"/>, without an errno.</summary>
    public PosixException(string? message) : base(message) => Operation = "";

    /// <summary>A failure described by <paramref name="message"/>, caused by <paramref name="innerException"/>.</summary>
    public PosixException(string? message, Exception? innerException) : base(message, innerException) => Operation = "";

    /// <summary>Creates the exception for <paramref name="errno"/> raised by <paramref name="operation"/>.</summary>
    public PosixException(string operation, int errno, string? detail = null)
        : base(Format(operation, errno, detail))
    {
        Operation = operation;
        Errno = errno;
        HResult = errno;
    }

    /// <summary>The platform's errno value.</summary>
    public int Errno { get; }

    /// <summary>The errno's symbolic name, e.g. "EBADF".</summary>
    public string ErrorName => Interop.Errno.Name(Errno);

    /// <summary>The call that failed, e.g. "epoll_ctl(ADD)".</summary>
    public string Operation { get; }

    private static string Format(string operation, int errno, string? detail) =>
        $"{operation} failed: {Interop.Errno.Name(errno)} ({Interop.Errno.Describe(errno)})" + (detail is null ? "" : $"; {detail}");
}

/// <summary>The descriptor is already registered with this poller.</summary>
public sealed class AlreadyRegisteredException : InvalidOperationException
{
    /// <summary>The descriptor is already registered with this poller.</summary>
    public AlreadyRegisteredException() : base("The descriptor is already registered with this poller.") { }

    /// <summary>With <paramref name="message"/>.</summary>
    public AlreadyRegisteredException(string? message) : base(message) { }

    /// <summary>With <paramref name="message"/>, caused by <paramref name="innerException"/>.</summary>
    public AlreadyRegisteredException(string? message, Exception? innerException) : base(message, innerException) { }

    /// <summary>For descriptor <paramref name="fd"/>.</summary>
    public AlreadyRegisteredException(int fd) : base($"Descriptor {fd} is already registered with this poller; modify the existing registration or deregister it first.") => Descriptor = fd;

    /// <summary>The descriptor (-1 when the exception was made without one).</summary>
    public int Descriptor { get; } = -1;
}

/// <summary>The descriptor is not registered with this poller.</summary>
public sealed class NotRegisteredException : InvalidOperationException
{
    /// <summary>The descriptor is not registered with this poller.</summary>
    public NotRegisteredException() : base("The descriptor is not registered with this poller.") { }

    /// <summary>With <paramref name="message"/>.</summary>
    public NotRegisteredException(string? message) : base(message) { }

    /// <summary>With <paramref name="message"/>, caused by <paramref name="innerException"/>.</summary>
    public NotRegisteredException(string? message, Exception? innerException) : base(message, innerException) { }

    /// <summary>For descriptor <paramref name="fd"/>.</summary>
    public NotRegisteredException(int fd) : base($"Descriptor {fd} is not registered with this poller.") => Descriptor = fd;

    /// <summary>The descriptor (-1 when the exception was made without one).</summary>
    public int Descriptor { get; } = -1;
}

/// <summary>The descriptor can never block (a regular file or a directory), so waiting on it means nothing.
/// Every backend refuses it the same way (epoll says EPERM; poll and select would call it always ready).</summary>
public sealed class UnsupportedDescriptorException : NotSupportedException
{
    /// <summary>The descriptor is always ready (a regular file or a directory) and cannot be waited on.</summary>
    public UnsupportedDescriptorException() : base("The descriptor is always ready (a regular file or a directory) and cannot be waited on.") { }

    /// <summary>With <paramref name="message"/>.</summary>
    public UnsupportedDescriptorException(string? message) : base(message) { }

    /// <summary>With <paramref name="message"/>, caused by <paramref name="innerException"/>.</summary>
    public UnsupportedDescriptorException(string? message, Exception? innerException) : base(message, innerException) { }

    /// <summary>For descriptor <paramref name="fd"/>, a <paramref name="kind"/> ("regular file", "directory").</summary>
    public UnsupportedDescriptorException(int fd, string kind) : base($"Descriptor {fd} is a {kind}, which is always ready and cannot be waited on; read it directly or off the loop.") => Descriptor = fd;

    /// <summary>The descriptor (-1 when the exception was made without one).</summary>
    public int Descriptor { get; } = -1;
}

/// <summary>A <see cref="System.Net.Sockets.Socket"/> (or its <see cref="System.Net.Sockets.SafeSocketHandle"/>) was
/// registered while in blocking mode. A readiness report is a hint, not a promise (another reader may drain the
/// data first; a datagram may be dropped for a bad checksum), so a read or write on a blocking socket after one
/// can block the whole loop. Set <c>Socket.Blocking = false</c> before registering it.</summary>
public sealed class BlockingSocketException : InvalidOperationException
{
    /// <summary>The socket is in blocking mode; set Socket.Blocking = false before registering it.</summary>
    public BlockingSocketException() : base("The socket is in blocking mode; set Socket.Blocking = false before registering it.") { }

    /// <summary>With <paramref name="message"/>.</summary>
    public BlockingSocketException(string? message) : base(message) { }

    /// <summary>With <paramref name="message"/>, caused by <paramref name="innerException"/>.</summary>
    public BlockingSocketException(string? message, Exception? innerException) : base(message, innerException) { }

    /// <summary>For descriptor <paramref name="fd"/>.</summary>
    public BlockingSocketException(int fd) : base($"Socket fd {fd} is in blocking mode (O_NONBLOCK is not set); set Socket.Blocking = false before registering it, or a read or write after a readiness report could block the loop.") => Descriptor = fd;

    /// <summary>The descriptor (-1 when the exception was made without one).</summary>
    public int Descriptor { get; } = -1;
}

/// <summary>The descriptor number is above what the backend can represent (select's FD_SETSIZE).</summary>
public sealed class DescriptorOutOfRangeException : ArgumentOutOfRangeException
{
    /// <summary>The descriptor number is above what the backend can watch.</summary>
    public DescriptorOutOfRangeException() : base("fd", "The descriptor number is above what the backend can watch.") { }

    /// <summary>With <paramref name="message"/>.</summary>
    public DescriptorOutOfRangeException(string? message) : base("fd", message) { }

    /// <summary>With <paramref name="message"/>, caused by <paramref name="innerException"/>.</summary>
    public DescriptorOutOfRangeException(string? message, Exception? innerException) : base(message, innerException) { }

    /// <summary>Descriptor <paramref name="fd"/> is above <paramref name="max"/>, the highest <paramref name="backend"/> can watch.</summary>
    public DescriptorOutOfRangeException(int fd, int max, string backend)
        : base(nameof(fd), fd, $"Descriptor {fd} is above {max}, the highest the {backend} backend can watch; use another backend.") => MaxDescriptor = max;

    /// <summary>The highest accepted descriptor (-1 when the exception was made without one).</summary>
    public int MaxDescriptor { get; } = -1;
}

/// <summary>No backend could be used: the forced one is unknown or unavailable, or none initialised.</summary>
public sealed class BackendUnavailableException : InvalidOperationException
{
    /// <summary>No backend could be used.</summary>
    public BackendUnavailableException() : base("No I/O multiplexing backend could be used.") { }

    /// <summary>With <paramref name="message"/>.</summary>
    public BackendUnavailableException(string? message) : base(message) { }

    /// <summary>With <paramref name="message"/>, caused by <paramref name="innerException"/>.</summary>
    public BackendUnavailableException(string? message, Exception? innerException) : base(message, innerException) { }
}
