// An ASP.NET Core app on IoMux: one call switches Kestrel's transport to IoMux event loops.
//   dotnet run --project samples/AspNetCore            then: curl http://127.0.0.1:5080/hello
using IoMux.AspNetCore;

var builder = WebApplication.CreateBuilder(args);
builder.WebHost.UseIoMux(options =>
{
    options.ThreadCount = Environment.ProcessorCount;     // one event loop per thread
    options.Scheduling = ApplicationScheduling.ThreadPool; // or Inline, for handlers that never block
});
builder.WebHost.ConfigureKestrel(kestrel => kestrel.ListenLocalhost(5080));

var app = builder.Build();
app.UseWebSockets();
app.MapGet("/hello", () => "Hello from Kestrel on IoMux");
app.MapPost("/echo", async (HttpContext context) => await context.Request.Body.CopyToAsync(context.Response.Body));
app.Run();
